"""The evaluation building blocks: probes, image metrics, Fréchet distance, feature-network weight
files and the report table."""

import csv
import io
import json

import numpy as np
import pytest
import torch

from lord.errors import UserError
from lord.evaluation import frechet, image_metrics, inception, lpips, probes, report

# ---------------------------------------------------------------- probes


def planted_codes(n=1000, n_classes=10, dim=16, seed=0):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, n_classes, n)
    centers = rng.normal(size=(n_classes, dim)) * 3
    return centers[labels] + rng.normal(size=(n, dim)) * 0.5, labels


@pytest.mark.parametrize("kind", probes.KINDS)
def test_probe_reads_planted_classes(kind):
    codes, labels = planted_codes()
    assert probes.probe_accuracy(codes, labels, kind, seed=0) > 0.95


@pytest.mark.parametrize("kind", probes.KINDS)
def test_probe_on_independent_codes_is_near_chance(kind):
    rng = np.random.default_rng(1)
    labels = rng.choice(5, size=2000, p=[0.4, 0.2, 0.2, 0.1, 0.1])
    codes = rng.normal(size=(2000, 16))
    chance = probes.chance_level(labels, seed=3)
    assert 0.3 < chance < 0.5
    assert abs(probes.probe_accuracy(codes, labels, kind, seed=3) - chance) < 0.06


def test_chance_level_predicts_the_training_majority_on_the_test_part():
    labels = np.array([7] * 60 + [2] * 40)
    train, test = probes.split_indices(len(labels), seed=5)
    assert len(train) == 80 and len(test) == 20 and set(train) | set(test) == set(range(100))
    majority = 7 if np.sum(labels[train] == 7) > np.sum(labels[train] == 2) else 2
    assert probes.chance_level(labels, seed=5) == pytest.approx(np.mean(labels[test] == majority))


def test_mlp_probe_is_deterministic_for_a_seed_and_handles_many_labels():
    codes, labels = planted_codes(n=1500, n_classes=150, dim=24, seed=2)
    first = probes.probe_accuracy(codes, labels, "mlp", seed=4)
    assert first == probes.probe_accuracy(torch.as_tensor(codes), torch.as_tensor(labels), "mlp", seed=4)
    assert first > 0.5 > probes.chance_level(labels, seed=4)


def test_logistic_probe_gives_the_same_answer_when_its_loss_is_chunked(monkeypatch):
    codes, labels = planted_codes(n=600, n_classes=30, dim=8, seed=3)
    whole = probes.probe_accuracy(codes, labels, "logistic")
    monkeypatch.setattr(probes, "LOGITS_PER_CHUNK", 30 * 50)
    assert probes.probe_accuracy(codes, labels, "logistic") == pytest.approx(whole, abs=1 / 120)


def test_probe_rejects_too_few_or_broken_codes():
    with pytest.raises(UserError, match="too few codes"):
        probes.probe_accuracy(np.zeros((1, 4)), np.zeros(1))
    codes, labels = planted_codes(n=50)
    codes[3, 2] = np.nan
    with pytest.raises(UserError, match="NaN"):
        probes.probe_accuracy(codes, labels)


# ---------------------------------------------------------------- image metrics


def reference_ssim(a, b):
    """SSIM from scipy's Gaussian filter (sigma 1.5, truncated to 11 taps), border cropped."""
    ndimage = pytest.importorskip("scipy.ndimage")

    def blur(z):
        return ndimage.gaussian_filter(z, sigma=1.5, truncate=3.5)[5:-5, 5:-5]

    values = []
    for image_a, image_b in zip(a.double().numpy(), b.double().numpy()):
        per_channel = []
        for x, y in zip(image_a, image_b):
            mx, my = blur(x), blur(y)
            vx, vy, cxy = blur(x * x) - mx**2, blur(y * y) - my**2, blur(x * y) - mx * my
            c1, c2 = 0.01**2, 0.03**2
            s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
            per_channel.append(s.mean())
        values.append(np.mean(per_channel))
    return np.array(values)


def test_ssim_identical_images_is_one_and_matches_an_independent_implementation():
    generator = torch.Generator().manual_seed(0)
    a = torch.rand(3, 3, 24, 30, generator=generator)
    b = (a + 0.2 * torch.randn(3, 3, 24, 30, generator=generator)).clamp(0, 1)
    assert torch.allclose(image_metrics.ssim(a, a), torch.ones(3), atol=1e-5)
    values = image_metrics.ssim(a, b)
    assert values.shape == (3,) and (values < 0.95).all()
    np.testing.assert_allclose(values.numpy(), reference_ssim(a, b), atol=2e-5)
    gray = image_metrics.ssim(a[:, :1], b[:, :1])
    np.testing.assert_allclose(gray.numpy(), reference_ssim(a[:, :1], b[:, :1]), atol=2e-5)


def test_ssim_agrees_with_scikit_image():
    metrics = pytest.importorskip("skimage.metrics")
    generator = torch.Generator().manual_seed(1)
    a = torch.rand(2, 3, 32, 32, generator=generator)
    b = (0.7 * a + 0.3 * torch.rand(2, 3, 32, 32, generator=generator)).clamp(0, 1)
    expected = [
        metrics.structural_similarity(x, y, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                      data_range=1.0, channel_axis=0)
        for x, y in zip(a.double().numpy(), b.double().numpy())
    ]
    np.testing.assert_allclose(image_metrics.ssim(a, b).numpy(), expected, atol=2e-5)


def test_mse_per_image():
    a = torch.zeros(2, 1, 4, 4)
    b = torch.stack([torch.zeros(1, 4, 4), torch.full((1, 4, 4), 0.5)])
    assert image_metrics.mse(a, b).tolist() == [0.0, 0.25]
    with pytest.raises(ValueError):
        image_metrics.mse(a, b[:1])


# ---------------------------------------------------------------- Fréchet distance


def test_frechet_distance_of_diagonal_gaussians_matches_the_closed_form():
    rng = np.random.default_rng(0)
    mu1, mu2 = rng.normal(size=6), rng.normal(size=6)
    s1, s2 = rng.uniform(0.1, 2.0, 6), rng.uniform(0.1, 2.0, 6)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum(s1 + s2 - 2 * np.sqrt(s1 * s2))
    assert frechet.frechet_distance(mu1, np.diag(s1), mu2, np.diag(s2)) == pytest.approx(expected, rel=1e-10)
    assert frechet.frechet_distance(mu1, np.diag(s1), mu1, np.diag(s1)) == pytest.approx(0.0, abs=1e-10)


def test_frechet_distance_of_full_covariances_matches_scipy_sqrtm():
    linalg = pytest.importorskip("scipy.linalg")
    rng = np.random.default_rng(1)
    features1, features2 = rng.normal(size=(200, 8)), rng.normal(size=(300, 8)) @ rng.normal(size=(8, 8)) + 1.0
    mu1, sigma1 = frechet.statistics(features1)
    mu2, sigma2 = frechet.statistics(features2)
    np.testing.assert_allclose(sigma1, np.cov(features1, rowvar=False))
    np.testing.assert_allclose(mu2, features2.mean(axis=0))
    root = linalg.sqrtm(sigma1 @ sigma2).real
    expected = np.sum((mu1 - mu2) ** 2) + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(root)
    assert frechet.frechet_distance(mu1, sigma1, mu2, sigma2) == pytest.approx(expected, rel=1e-8)


def test_frechet_distance_survives_singular_and_slightly_indefinite_covariances():
    linalg = pytest.importorskip("scipy.linalg")
    rng = np.random.default_rng(2)
    mu1, sigma1 = frechet.statistics(rng.normal(size=(5, 20)))
    mu2, sigma2 = frechet.statistics(rng.normal(size=(7, 20)))
    expected = (np.sum((mu1 - mu2) ** 2) + np.trace(sigma1) + np.trace(sigma2)
                - 2 * np.trace(linalg.sqrtm(sigma1 @ sigma2)).real)
    assert frechet.frechet_distance(mu1, sigma1, mu2, sigma2) == pytest.approx(expected, rel=1e-7)
    indefinite = frechet.frechet_distance(mu1, sigma1 - 1e-9 * np.eye(20), mu2, sigma2 - 1e-9 * np.eye(20))
    assert isinstance(indefinite, float) and indefinite == pytest.approx(expected, rel=1e-7)


# ---------------------------------------------------------------- feature-network weight files


def stem(name, cin, cout, kh, kw=None):
    return [(name, cin, cout, kh, kw or kh)]


def inception_a(name, cin, pool):
    return [(f"{name}.branch1x1", cin, 64, 1, 1), (f"{name}.branch5x5_1", cin, 48, 1, 1),
            (f"{name}.branch5x5_2", 48, 64, 5, 5), (f"{name}.branch3x3dbl_1", cin, 64, 1, 1),
            (f"{name}.branch3x3dbl_2", 64, 96, 3, 3), (f"{name}.branch3x3dbl_3", 96, 96, 3, 3),
            (f"{name}.branch_pool", cin, pool, 1, 1)]


def inception_c(name, c7):
    return [(f"{name}.branch1x1", 768, 192, 1, 1), (f"{name}.branch7x7_1", 768, c7, 1, 1),
            (f"{name}.branch7x7_2", c7, c7, 1, 7), (f"{name}.branch7x7_3", c7, 192, 7, 1),
            (f"{name}.branch7x7dbl_1", 768, c7, 1, 1), (f"{name}.branch7x7dbl_2", c7, c7, 7, 1),
            (f"{name}.branch7x7dbl_3", c7, c7, 1, 7), (f"{name}.branch7x7dbl_4", c7, c7, 7, 1),
            (f"{name}.branch7x7dbl_5", c7, 192, 1, 7), (f"{name}.branch_pool", 768, 192, 1, 1)]


def inception_e(name, cin):
    return [(f"{name}.branch1x1", cin, 320, 1, 1), (f"{name}.branch3x3_1", cin, 384, 1, 1),
            (f"{name}.branch3x3_2a", 384, 384, 1, 3), (f"{name}.branch3x3_2b", 384, 384, 3, 1),
            (f"{name}.branch3x3dbl_1", cin, 448, 1, 1), (f"{name}.branch3x3dbl_2", 448, 384, 3, 3),
            (f"{name}.branch3x3dbl_3a", 384, 384, 1, 3), (f"{name}.branch3x3dbl_3b", 384, 384, 3, 1),
            (f"{name}.branch_pool", cin, 192, 1, 1)]


def official_inception_layout(with_batch_counters=True):
    """Keys and shapes of pt_inception-2015-12-05-6726825d.pth: torchvision's Inception3 without the
    auxiliary head and with a 1008-way fc."""
    convs = (
        stem("Conv2d_1a_3x3", 3, 32, 3) + stem("Conv2d_2a_3x3", 32, 32, 3) + stem("Conv2d_2b_3x3", 32, 64, 3)
        + stem("Conv2d_3b_1x1", 64, 80, 1) + stem("Conv2d_4a_3x3", 80, 192, 3)
        + inception_a("Mixed_5b", 192, 32) + inception_a("Mixed_5c", 256, 64) + inception_a("Mixed_5d", 288, 64)
        + [("Mixed_6a.branch3x3", 288, 384, 3, 3), ("Mixed_6a.branch3x3dbl_1", 288, 64, 1, 1),
           ("Mixed_6a.branch3x3dbl_2", 64, 96, 3, 3), ("Mixed_6a.branch3x3dbl_3", 96, 96, 3, 3)]
        + inception_c("Mixed_6b", 128) + inception_c("Mixed_6c", 160) + inception_c("Mixed_6d", 160)
        + inception_c("Mixed_6e", 192)
        + [("Mixed_7a.branch3x3_1", 768, 192, 1, 1), ("Mixed_7a.branch3x3_2", 192, 320, 3, 3),
           ("Mixed_7a.branch7x7x3_1", 768, 192, 1, 1), ("Mixed_7a.branch7x7x3_2", 192, 192, 1, 7),
           ("Mixed_7a.branch7x7x3_3", 192, 192, 7, 1), ("Mixed_7a.branch7x7x3_4", 192, 192, 3, 3)]
        + inception_e("Mixed_7b", 1280) + inception_e("Mixed_7c", 2048)
    )
    layout = {}
    for name, cin, cout, kh, kw in convs:
        layout[f"{name}.conv.weight"] = (cout, cin, kh, kw)
        for part in ("weight", "bias", "running_mean", "running_var"):
            layout[f"{name}.bn.{part}"] = (cout,)
        if with_batch_counters:
            layout[f"{name}.bn.num_batches_tracked"] = ()
    layout["fc.weight"] = (1008, 2048)
    layout["fc.bias"] = (1008,)
    return layout


ALEXNET_LAYOUT = {
    "features.0.weight": (64, 3, 11, 11), "features.0.bias": (64,),
    "features.3.weight": (192, 64, 5, 5), "features.3.bias": (192,),
    "features.6.weight": (384, 192, 3, 3), "features.6.bias": (384,),
    "features.8.weight": (256, 384, 3, 3), "features.8.bias": (256,),
    "features.10.weight": (256, 256, 3, 3), "features.10.bias": (256,),
    "classifier.1.weight": (4096, 9216), "classifier.1.bias": (4096,),
    "classifier.4.weight": (4096, 4096), "classifier.4.bias": (4096,),
    "classifier.6.weight": (1000, 4096), "classifier.6.bias": (1000,),
}
VGG16_CONVS = [(0, 3, 64), (2, 64, 64), (5, 64, 128), (7, 128, 128), (10, 128, 256), (12, 256, 256),
               (14, 256, 256), (17, 256, 512), (19, 512, 512), (21, 512, 512), (24, 512, 512), (26, 512, 512),
               (28, 512, 512)]
VGG16_LAYOUT = {
    **{f"features.{i}.weight": (cout, cin, 3, 3) for i, cin, cout in VGG16_CONVS},
    **{f"features.{i}.bias": (cout,) for i, cin, cout in VGG16_CONVS},
    "classifier.0.weight": (4096, 25088), "classifier.0.bias": (4096,),
    "classifier.3.weight": (4096, 4096), "classifier.3.bias": (4096,),
    "classifier.6.weight": (1000, 4096), "classifier.6.bias": (1000,),
}
LPIPS_LAYOUTS = {
    "alex": {f"lin{i}.model.1.weight": (1, c, 1, 1) for i, c in enumerate((64, 192, 384, 256, 256))},
    "vgg": {f"lin{i}.model.1.weight": (1, c, 1, 1) for i, c in enumerate((64, 128, 256, 512, 512))},
}


def fake_weights(layout, seed=0):
    """One random value per tensor, broadcast to the official shape: the file stays a few kB."""
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in layout.items():
        if key.endswith("num_batches_tracked"):
            state[key] = torch.tensor(0)
        elif key.endswith("running_var"):
            state[key] = torch.ones(1).expand(shape)
        else:
            state[key] = (torch.rand(1, generator=generator) * 0.1).expand(shape)
    return state


def save(path, state):
    torch.save(state, path)
    assert path.stat().st_size < 1_000_000
    return path


@pytest.fixture
def no_weight_sources(monkeypatch, tmp_path):
    for env in ("LORD_INCEPTION_WEIGHTS", "LORD_LPIPS_WEIGHTS", "LORD_ALEXNET_WEIGHTS", "LORD_VGG16_WEIGHTS"):
        monkeypatch.delenv(env, raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    monkeypatch.delenv("TORCH_HUB", raising=False)


@pytest.mark.parametrize("with_batch_counters", [True, False])
def test_inception_loads_a_file_with_the_official_layout(tmp_path, no_weight_sources, with_batch_counters):
    layout = official_inception_layout(with_batch_counters)
    assert len(layout) == (566 if with_batch_counters else 472)
    state = fake_weights(layout)
    path = save(tmp_path / inception.FID_WEIGHTS.file_name, state)
    network = inception.load_inception(path, download=False)
    loaded = network.state_dict()
    assert torch.equal(loaded["Mixed_7c.branch_pool.conv.weight"], state["Mixed_7c.branch_pool.conv.weight"])
    assert torch.equal(loaded["fc.bias"], state["fc.bias"])
    assert not any(parameter.requires_grad for parameter in network.parameters()) and not network.training
    with torch.no_grad():
        features = network(torch.rand(2, 1, 20, 24))
    assert features.shape == (2, inception.FEATURE_DIM) and torch.isfinite(features).all()


def test_inception_pooling_is_that_of_the_fid_network():
    ones = torch.ones(1, 2, 5, 5)
    assert torch.equal(inception.average_pool(ones), ones)
    network = inception.FIDInceptionV3()
    assert network.Mixed_7c.max_pool and not network.Mixed_7b.max_pool


def test_inception_found_through_the_environment_variable(tmp_path, no_weight_sources, monkeypatch):
    save(tmp_path / inception.FID_WEIGHTS.file_name, fake_weights(official_inception_layout()))
    monkeypatch.setenv("LORD_INCEPTION_WEIGHTS", str(tmp_path))
    state, origin = inception.load_weights(download=False)
    assert origin.endswith(inception.FID_WEIGHTS.file_name) and "fc.weight" in state


def test_inception_rejects_a_file_of_another_layout(tmp_path, no_weight_sources):
    layout = official_inception_layout()
    layout["fc.weight"], layout["fc.bias"] = (1000, 2048), (1000,)
    layout["AuxLogits.fc.weight"] = (1000, 768)
    path = save(tmp_path / "imagenet-inception.pth", fake_weights(layout))
    with pytest.raises(UserError, match=r"unexpected AuxLogits\.fc\.weight.*wrong shapes: fc\.weight"):
        inception.load_inception(path, download=False)


def test_missing_inception_weights_say_how_to_provide_them(tmp_path, no_weight_sources, monkeypatch):
    with pytest.raises(UserError, match="LORD_INCEPTION_WEIGHTS") as error:
        inception.load_inception(download=False)
    assert inception.FID_WEIGHTS.url in str(error.value)
    with pytest.raises(UserError, match="does not exist"):
        inception.load_inception(tmp_path / "nowhere.pth", download=False)

    def offline(*args, **kwargs):
        raise OSError("network unreachable")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    with pytest.raises(UserError, match="could not be downloaded.*LORD_INCEPTION_WEIGHTS"):
        inception.load_inception()
    (tmp_path / "junk.pth").write_text("not a weight file")
    with pytest.raises(UserError, match="cannot read"):
        inception.load_inception(tmp_path / "junk.pth")


def test_inception_uses_the_hub_cache_when_offline(tmp_path, no_weight_sources):
    cache = inception.FID_WEIGHTS.cache_path()
    assert str(cache).startswith(str(tmp_path / "torch-home"))
    cache.parent.mkdir(parents=True)
    save(cache, fake_weights(official_inception_layout()))
    assert isinstance(inception.load_inception(download=False), inception.FIDInceptionV3)


@pytest.mark.parametrize("backbone, backbone_layout", [("alex", ALEXNET_LAYOUT), ("vgg", VGG16_LAYOUT)])
def test_lpips_loads_files_with_the_official_layouts(tmp_path, no_weight_sources, monkeypatch, backbone,
                                                    backbone_layout):
    calibration = fake_weights(LPIPS_LAYOUTS[backbone], seed=1)
    save(tmp_path / f"{backbone}.pth", calibration)
    backbone_state = fake_weights(backbone_layout, seed=2)
    backbone_path = save(tmp_path / f"{backbone}-imagenet.pth", backbone_state)
    monkeypatch.setenv("LORD_LPIPS_WEIGHTS", str(tmp_path))
    assert lpips.lpips_available(backbone, backbone_weights=backbone_path, download=False)
    metric = lpips.load_lpips(backbone, backbone_weights=backbone_path, download=False)
    for layer in range(5):
        assert torch.equal(metric.calibration[layer].weight, calibration[f"lin{layer}.model.1.weight"])
    last_conv = max(key for key in backbone_layout if key.startswith("features."))
    index = last_conv.split(".")[1]
    assert torch.equal(metric.features[int(index)].weight, backbone_state[f"features.{index}.weight"])
    generator = torch.Generator().manual_seed(0)
    a, b = torch.rand(2, 3, 40, 40, generator=generator), torch.rand(2, 3, 40, 40, generator=generator)
    with torch.no_grad():
        assert torch.allclose(metric(a, a), torch.zeros(2), atol=1e-7)
        assert (metric(a, b) > 0).all()


LPIPS_TAPS = {"alex": (1, 4, 7, 9, 11), "vgg": (3, 8, 15, 22, 29)}


@pytest.mark.parametrize("backbone", ["alex", "vgg"])
def test_lpips_follows_the_published_formula(backbone):
    """Scaling layer, taps after the right ReLUs, unit channel norm, calibrated squared difference,
    spatial mean, sum over layers: recomputed here step by step."""
    torch.manual_seed(0)
    metric = lpips.LPIPS(backbone).eval()
    for layer in metric.calibration:
        torch.nn.init.uniform_(layer.weight, 0.0, 1.0)
    a, b = torch.rand(2, 3, 48, 48), torch.rand(2, 3, 48, 48)
    shift = torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1)
    scale = torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1)
    expected = torch.zeros(2)
    with torch.no_grad():
        x, y = (2 * a - 1 - shift) / scale, (2 * b - 1 - shift) / scale
        tapped = 0
        for index, layer in enumerate(metric.features):
            x, y = layer(x), layer(y)
            if index in LPIPS_TAPS[backbone]:
                fx = x / (x.pow(2).sum(dim=1, keepdim=True).sqrt() + 1e-10)
                fy = y / (y.pow(2).sum(dim=1, keepdim=True).sqrt() + 1e-10)
                weight = metric.calibration[tapped].weight.view(1, -1, 1, 1)
                expected += ((fx - fy) ** 2 * weight).sum(dim=1).mean(dim=(1, 2))
                tapped += 1
        assert tapped == 5
        assert torch.allclose(metric(a, b), expected, rtol=1e-5, atol=1e-7)
        gray_a, gray_b = a[:, :1], b[:, :1]
        assert torch.allclose(metric(gray_a, gray_b), metric(gray_a.repeat(1, 3, 1, 1), gray_b.repeat(1, 3, 1, 1)))


def test_lpips_rejects_mismatched_files_and_reports_missing_ones(tmp_path, no_weight_sources):
    vgg_calibration = save(tmp_path / "vgg.pth", fake_weights(LPIPS_LAYOUTS["vgg"]))
    alexnet = save(tmp_path / "alexnet.pth", fake_weights(ALEXNET_LAYOUT))
    with pytest.raises(UserError, match="wrong shapes: 1.weight"):
        lpips.load_lpips("alex", weights=vgg_calibration, backbone_weights=alexnet, download=False)
    with pytest.raises(UserError, match="missing 2.weight"):
        lpips.load_lpips("vgg", weights=vgg_calibration, backbone_weights=alexnet, download=False)
    vgg_bn = dict(VGG16_LAYOUT, **{"features.1.running_mean": (64,)})
    with pytest.raises(UserError, match="unexpected 1.running_mean"):
        lpips.load_lpips("vgg", weights=vgg_calibration, download=False,
                         backbone_weights=save(tmp_path / "bn.pth", fake_weights(vgg_bn)))
    negative = {key: -value for key, value in fake_weights(LPIPS_LAYOUTS["alex"]).items()}
    with pytest.raises(UserError, match="negative"):
        lpips.load_lpips("alex", weights=save(tmp_path / "neg.pth", negative), backbone_weights=alexnet,
                         download=False)
    with pytest.raises(UserError, match="LORD_LPIPS_WEIGHTS"):
        lpips.load_lpips("alex", backbone_weights=alexnet, download=False)
    with pytest.raises(UserError, match="LORD_ALEXNET_WEIGHTS"):
        lpips.load_lpips("alex", weights=save(tmp_path / "alex.pth", fake_weights(LPIPS_LAYOUTS["alex"])),
                         download=False)
    assert not lpips.lpips_available("alex", download=False)
    with pytest.raises(UserError, match="unknown LPIPS backbone"):
        lpips.load_lpips("squeeze")


# ---------------------------------------------------------------- report


def evaluation(model, **families):
    result = {"model": model, "data": "cars3d", "stage": "encoders", "seed": 0, "version": 1,
              "class_from_content": None, "content_from_class": None, "content_transfer": None,
              "reconstruction": None, "translation": None, "fid": None, "lpips_diversity": None}
    result.update(families)
    return result


LORD_RESULT = evaluation(
    "lord-cars3d",
    class_from_content={"logistic": 0.0123456, "mlp": 0.02, "chance": 0.00546},
    content_transfer={"perceptual": 1.23456, "mse": 0.00123, "ssim": 0.8765432, "lpips": None,
                      "baseline_unchanged": {"perceptual": 2.5, "mse": 0.01, "ssim": 0.5, "lpips": None},
                      "baseline_random_same_class": {"perceptual": 3.0, "mse": 0.02, "ssim": 0.4, "lpips": None},
                      "n_pairs": 500},
)
OVERLORD_RESULT = evaluation("overlord-ffhq", stage="synthesis", fid=12345.67, lpips_diversity=0.456789)


@pytest.fixture
def results_dir(tmp_path):
    (tmp_path / "lord-cars3d").mkdir()
    (tmp_path / "lord-cars3d" / "evaluation.json").write_text(json.dumps(LORD_RESULT))
    (tmp_path / "overlord.json").write_text(json.dumps(OVERLORD_RESULT))
    return tmp_path


def test_report_markdown_table(results_dir):
    table = report.report([results_dir / "lord-cars3d", results_dir / "overlord.json"],
                          columns=["class_from_content.logistic,content_transfer.ssim", "fid"])
    assert table == (
        "| model | data | stage | class_from_content.logistic | content_transfer.ssim | fid |\n"
        "| --- | --- | --- | ---: | ---: | ---: |\n"
        "| lord-cars3d | cars3d | encoders | 0.01235 | 0.8765 | - |\n"
        "| overlord-ffhq | cars3d | synthesis | - | - | 12346 |\n"
    )


def test_report_default_columns_skip_empty_families(results_dir):
    table = report.report([results_dir / "lord-cars3d", results_dir / "overlord.json"])
    header = table.splitlines()[0]
    assert header.startswith("| model | data | stage | class_from_content.logistic |")
    for column in ("content_transfer.baseline_unchanged.perceptual", "content_transfer.n_pairs", "fid",
                   "lpips_diversity"):
        assert f" {column} " in header
    for column in ("seed", "content_from_class.mlp", "translation.target_class_accuracy",
                   "content_transfer.lpips"):
        assert f" {column} " not in header
    assert len(table.splitlines()) == 4


def test_report_csv_and_family_columns(results_dir):
    table = report.report([results_dir / "lord-cars3d"], columns=["model", "content_transfer", "seed"], fmt="csv")
    rows = list(csv.reader(io.StringIO(table)))
    assert rows[0][:8] == ["model", "data", "stage", "content_transfer.perceptual", "content_transfer.mse",
                           "content_transfer.ssim", "content_transfer.lpips",
                           "content_transfer.baseline_unchanged.perceptual"]
    assert rows[0][-2:] == ["content_transfer.n_pairs", "seed"]
    assert rows[1][:7] == ["lord-cars3d", "cars3d", "encoders", "1.235", "0.00123", "0.8765", "-"]
    assert rows[1][-2:] == ["500", "0"]
    assert len(rows) == 2


def test_report_finds_results_by_model_name_and_in_eval_dirs(results_dir):
    models = results_dir / "base" / "cache" / "models"
    (models / "overlord-ffhq" / "eval").mkdir(parents=True)
    (models / "overlord-ffhq" / "eval" / "synthesis.json").write_text(json.dumps(OVERLORD_RESULT))
    results = report.load_results(["overlord-ffhq"], base_dir=results_dir / "base")
    assert [result["model"] for result in results] == ["overlord-ffhq"]


def test_report_errors_are_user_errors(results_dir):
    with pytest.raises(UserError, match="unknown column 'fdi'; available: model, data, stage"):
        report.report([results_dir / "overlord.json"], columns=["fdi"])
    (results_dir / "config.json").write_text(json.dumps({"model": "x", "stage": 1}))
    with pytest.raises(UserError, match="config.json is not an evaluation result"):
        report.load_results([results_dir / "config.json"])
    with pytest.raises(UserError, match="no such evaluation file"):
        report.load_results([results_dir / "missing.json"])
    (results_dir / "empty").mkdir()
    with pytest.raises(UserError, match="no evaluation results in"):
        report.load_results([results_dir / "empty"])
    with pytest.raises(UserError, match="unknown table format"):
        report.format_table([LORD_RESULT], fmt="latex")


def test_flatten_lines_up_rows_of_different_families():
    lord_row, overlord_row = report.flatten(LORD_RESULT), report.flatten(OVERLORD_RESULT)
    assert list(lord_row) == list(overlord_row)
    assert list(lord_row)[:3] == ["model", "data", "stage"]
    assert lord_row["content_transfer.baseline_random_same_class.ssim"] == 0.4
    assert overlord_row["class_from_content.mlp"] is None and overlord_row["fid"] == 12345.67
    assert report.flatten(lord_row) == lord_row


def test_report_over_seeds_gives_mean_and_spread_per_model(tmp_path):
    paths = []
    for seed, mlp in enumerate((0.2, 0.3, 0.4)):
        for model in ("syn-lord", "syn-plain"):
            result = evaluation(f"{model}-s{seed}", seed=seed,
                                class_from_content={"logistic": 0.5, "mlp": mlp if model == "syn-lord" else 0.9,
                                                    "chance": 0.125})
            paths.append(tmp_path / f"{model}-s{seed}.json")
            paths[-1].write_text(json.dumps(result))
    table = report.report(paths, columns=["class_from_content.mlp"], seeds=True)
    assert table == (
        "| model | data | stage | seeds | class_from_content.mlp |\n"
        "| --- | --- | --- | ---: | ---: |\n"
        "| syn-lord | cars3d | encoders | 3 | 0.3 ± 0.1 |\n"
        "| syn-plain | cars3d | encoders | 3 | 0.9 ± 0 |\n"
    )
    per_seed = report.report(paths, columns=["class_from_content.mlp"])
    assert len(per_seed.splitlines()) == 2 + 6 and "±" not in per_seed


def test_report_over_seeds_keeps_a_model_whose_name_has_no_seed(results_dir):
    table = report.report([results_dir / "lord-cars3d"], columns=["content_transfer.mse"], seeds=True)
    assert table.splitlines()[-1] == "| lord-cars3d | cars3d | encoders | 1 | 0.00123 ± 0 |"
