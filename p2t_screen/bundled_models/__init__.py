"""Models shipped with p2t as package data: each folder is a model directory (see MODEL_CARD.md)."""
