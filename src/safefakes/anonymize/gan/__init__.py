"""GAN face anonymizers and the machinery they share.

* :mod:`.crops` — square context crops around a face box, resizing to the model resolution and
  pasting generated pixels back strictly inside the box.
* :mod:`.keypoints` — the 7 sparse keypoints (dataset extras, Keypoint R-CNN, MTCNN, or none) and
  keypoint coverage by face size.
* :mod:`.deepprivacy` — the DeepPrivacy conditional U-Net generator and background-conditioned
  discriminator with progressive growing, and the WGAN-GP losses.
* :mod:`.training` — face-crop training sets (synthetic, FDF) and the resumable training loop.
* :mod:`.anonymizer` — the ``deepprivacy`` :class:`~safefakes.anonymize.base.FaceAnonymizer`.

Nothing here is imported by ``safefakes.anonymize`` itself, so conventional runs never load torch.
"""
