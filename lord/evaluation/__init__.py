"""The metrics behind the papers' tables, and the table that gathers them.

Metric families of an evaluation result and their direction:

- class_from_content (probes.py): accuracy of predicting the class from the content codes, by a
  logistic regression and by an MLP, beside the chance level. Lower is better (chance is ideal):
  it measures class information leaking into the content code.
- content_from_class (probes.py): accuracy of predicting the ground-truth content id from the
  class codes, where the data has content ids. Lower is better, likewise.
- content_transfer: distance between a translation and the ground-truth image of that content in
  the target class: perceptual (VGG) distance, lpips (lpips.py), mse (image_metrics.py) lower is
  better; ssim (image_metrics.py) higher is better. Two baselines frame the numbers: the unchanged
  source image and a random image of the target class.
- reconstruction: perceptual distance and mse of reconstructions; lower is better.
- translation: accuracy of a classifier on translated images: target_class_accuracy higher is
  better, source_class_accuracy lower is better; classifier_accuracy (on real test images) shows
  how far the classifier itself can be trusted.
- fid (inception.py, frechet.py): Fréchet Inception distance between translations and real images
  of the target label; lower is better.
- fid_paper (fid_paper.py, pil_resize.py): the same distance under the protocol of the OverLORD
  paper's code (torchvision's ImageNet InceptionV3, Pillow resizing, ImageNet normalisation); not
  comparable with fid.
- lpips_diversity (lpips.py): mean pairwise LPIPS between translations of one input to one label
  with different references; higher is more diverse.

evaluate.py computes them all for one model, stage and data set (`lord.py evaluate`), with pairs.py
(which images are translated), distances.py (per-image distances and their feature networks) and
classifier.py (the classifier behind translation accuracy); export.py writes the scored
translations as image files (`evaluate --export`). report.py turns evaluation JSON files
into one markdown or CSV table (`lord.py report`).
"""
