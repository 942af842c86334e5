"""Locally masked convolutions and other generation orders for arblocks."""
