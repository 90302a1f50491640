"""edgebp: cuffless, continuous blood-pressure models from the training GPU to the wearable."""

__version__ = "0.1.0"
