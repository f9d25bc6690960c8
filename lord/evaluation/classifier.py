"""The small CNN classifier behind translation accuracy, trained by the evaluator on real images.

It needs no pretrained weights, so translation accuracy can be measured on any labelled data. It is
trained on a seeded 80% of the real images and scored on the other 20% (the held-out accuracy): a
translation accuracy means little when the classifier cannot tell the real classes apart. It trains
for EPOCHS epochs, but at least MIN_STEPS steps (small test sets) and at most MAX_STEPS (large sets);
images larger than MAX_SIDE are area-downsampled first, which bounds its cost on large images.
"""

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from lord.evaluation.probes import split_indices

MAX_SIDE = 64
WIDTHS = (16, 32, 64, 64)
BATCH_SIZE = 64
EPOCHS = 8
MIN_STEPS = 400
MAX_STEPS = 4000
LEARNING_RATE = 2e-3
PREDICT_BATCH_SIZE = 512


def downsampled(images):
    side = max(images.shape[-2:])
    if side <= MAX_SIDE:
        return images
    factor = math.ceil(side / MAX_SIDE)
    return F.avg_pool2d(images, kernel_size=factor, stride=factor, ceil_mode=True)


class ImageClassifier(nn.Module):
    """Strided 3x3 convolutions with batch norm, global average pooling and a linear layer."""

    def __init__(self, channels, n_labels):
        super().__init__()
        layers, in_channels = [], channels
        for index, width in enumerate(WIDTHS):
            layers += [nn.Conv2d(in_channels, width, 3, stride=1 if index == 0 else 2, padding=1, bias=False),
                       nn.BatchNorm2d(width), nn.ReLU(inplace=True)]
            in_channels = width
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(in_channels, n_labels)

    def forward(self, images):
        return self.head(self.features(downsampled(images) * 2 - 1).mean(dim=(2, 3)))

    @torch.no_grad()
    def predict(self, images):
        """Predicted label of each image of a float (N, C, H, W) batch in [0, 1], in chunks."""
        return torch.cat([self(chunk).argmax(dim=1) for chunk in images.split(PREDICT_BATCH_SIZE)])


def train_classifier(load_images, labels, seed=0, device="cpu", quiet=True):
    """(classifier in eval mode, accuracy on the held-out 20%) for images `load_images(indices)`
    (float (B, C, H, W) in [0, 1] on `device`, from an int64 index tensor) with int labels (N,)."""
    labels = np.asarray(labels, dtype=np.int64)
    train, test = split_indices(len(labels), seed)
    device = torch.device(device)
    targets = torch.as_tensor(labels, device=device)
    channels = load_images(torch.as_tensor(train[:1], device=device)).shape[1]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        classifier = ImageClassifier(channels, int(labels.max()) + 1).to(device)
    optimizer = torch.optim.Adam(classifier.parameters(), lr=LEARNING_RATE)
    batch_size = min(BATCH_SIZE, len(train))
    steps_per_epoch = len(train) // batch_size
    n_steps = min(MAX_STEPS, max(MIN_STEPS, EPOCHS * steps_per_epoch))
    generator = torch.Generator().manual_seed(seed)
    train_indices = torch.as_tensor(train)
    classifier.train()
    with tqdm(total=n_steps, desc="classifier", unit="step", disable=quiet, dynamic_ncols=True, leave=False) as bar:
        for step in range(n_steps):
            if step % steps_per_epoch == 0:
                order = train_indices[torch.randperm(len(train_indices), generator=generator)].to(device)
            rows = order[(step % steps_per_epoch) * batch_size:][:batch_size]
            for group in optimizer.param_groups:
                group["lr"] = LEARNING_RATE * 0.5 * (1 + math.cos(math.pi * step / n_steps))
            loss = F.cross_entropy(classifier(load_images(rows)), targets[rows])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            bar.update()
    classifier.eval()
    test_indices = torch.as_tensor(test, device=device)
    correct = sum(
        int((classifier.predict(load_images(rows)) == targets[rows]).sum())
        for rows in test_indices.split(PREDICT_BATCH_SIZE)
    )
    return classifier, correct / len(test)
