"""Matching and losses: Hungarian matching with pluggable cost terms, and a set criterion with pluggable loss
terms (BCE, focal, Dice, box L1 / GIoU), plus VITA's similarity loss."""
