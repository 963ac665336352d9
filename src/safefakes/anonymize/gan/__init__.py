"""GAN face anonymizers (DeepPrivacy, CIAGAN, Sun2018) and the machinery they share.

Shared by all three:

* :mod:`.crops`: square context crops around a face box, resizing to the model resolution, and pasting
  generated pixels back strictly inside the box.
* :mod:`.cropsets` and :mod:`.crop_readers`: face-crop training sets in one in-memory form, made from the
  synthetic data, FDF, PIPA or an identity folder (CelebA style).
* :mod:`.keypoints` (DeepPrivacy's 7 sparse keypoints) and :mod:`.landmarks68` (dlib's 68 landmarks for
  CIAGAN and Sun2018), with their sources and coverage by face size.
* :mod:`.recipe`: what each GAN plugs into the shared training loop (:mod:`.training`) and the shared
  dataset anonymizer (:mod:`.anonymizer`, the three registered methods).

Per GAN, a model module (:mod:`.deepprivacy`, :mod:`.ciagan`, :mod:`.sun2018`) holds the networks and a
``*_training`` module its hyper-parameters, batches and training step.

``safefakes.anonymize`` registers the three methods by name only, so conventional runs never load torch.
"""
