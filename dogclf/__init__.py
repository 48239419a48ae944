"""dogclf: a dog-breed classifier from a folder of JPEGs to a production AWS service."""

__version__ = "0.1.0"
