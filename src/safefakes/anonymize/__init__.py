"""The anonymize stage of the safefakes pipeline.

The method names every layer shares live here, light to import (the workflow reads them while it builds
the DAG, without loading OpenCV or torch).
"""

#: The GAN face anonymizers: each is a method (``safefakes anonymize``) and a trainable model (``safefakes train-gan``).
GAN_METHODS = ("deepprivacy", "ciagan", "sun2018")
#: The paper's conventional methods plus the baselines of Heimes and DeepPrivacy; ``original`` leaves images untouched.
CONVENTIONAL_METHODS = ("original", "blur", "fullblur", "pixelate", "blackout", "heavyblur", "gaussian9", "noise", "eyes")
