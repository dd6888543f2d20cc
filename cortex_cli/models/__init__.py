"""Registered generators and what a command is about: classes, class names, concepts, targets."""
