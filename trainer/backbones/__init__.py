"""Backbones for `trainer.model_spec`: the Keras EfficientNet-Lite builder, the torch-free checkpoint
reader that feeds it ImageNet weights, and the cache of converted weights."""
