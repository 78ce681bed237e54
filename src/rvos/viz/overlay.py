"""Masks drawn over frames: each sentence its own colour, a contour around each mask, and the sentences written
on the frame in their colours."""

from __future__ import annotations

import colorsys
from typing import Sequence

import cv2
import numpy as np


def palette(k: int) -> list[tuple[int, int, int]]:
    """``k`` well separated, saturated RGB colours."""
    out = []
    for i in range(k):
        r, g, b = colorsys.hsv_to_rgb((0.02 + i * 0.618034) % 1.0, 0.85, 1.0)
        out.append((int(r * 255), int(g * 255), int(b * 255)))
    return out


def _label(img: np.ndarray, text: str, row: int, color: tuple[int, int, int]) -> None:
    scale = max(0.3, min(img.shape[0], img.shape[1]) / 600)
    thickness = max(1, int(round(scale * 1.5)))
    (w, h), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
    y = 4 + (row + 1) * (h + base + 4)
    cv2.rectangle(img, (2, y - h - base - 2), (min(img.shape[1] - 1, 8 + w), y + 2), (0, 0, 0), -1)
    cv2.putText(img, text, (5, y - base), cv2.FONT_HERSHEY_SIMPLEX, scale, color, thickness, cv2.LINE_AA)


def overlay(frame: np.ndarray, masks: np.ndarray, texts: Sequence[str] = (), alpha: float = 0.5,
            colors: Sequence[tuple[int, int, int]] | None = None, title: str | None = None) -> np.ndarray:
    """frame (H, W, 3) uint8 RGB; masks (K, H, W) bool -> the frame with each mask tinted and outlined."""
    colors = list(colors) if colors is not None else palette(len(masks))
    out = frame.astype(np.float32)
    for mask, color in zip(masks, colors):
        out[mask] = (1 - alpha) * out[mask] + alpha * np.array(color, np.float32)
    out = out.astype(np.uint8)
    for mask, color in zip(masks, colors):
        contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(out, contours, -1, color, max(1, min(frame.shape[:2]) // 200))
    lines = ([title] if title else []) + list(texts)
    line_colors = ([(255, 255, 255)] if title else []) + colors[: len(texts)]
    for row, (text, color) in enumerate(zip(lines, line_colors)):
        _label(out, text, row, color)
    return out


def spotlight(frame: np.ndarray, mask: np.ndarray, text: str = "", title: str | None = None,
              color: tuple[int, int, int] = (0, 255, 255), dim: float = 0.35) -> np.ndarray:
    """frame (H, W, 3) uint8 RGB; mask (H, W) bool -> the mask's pixels as they are, the rest dimmed, and the mask
    outlined in ``color``: no tint over the objects, so a mask is seen on an object of any colour (the default
    cyan is a colour no synthetic object has)."""
    out = frame.astype(np.float32)
    out[~mask] *= dim
    out = out.astype(np.uint8)
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    cv2.drawContours(out, contours, -1, color, max(1, min(frame.shape[:2]) // 120))
    lines = ([title] if title else []) + ([text] if text else [])
    for row, line in enumerate(lines):
        _label(out, line, row, (255, 255, 255) if title and row == 0 else color)
    return out


def side_by_side(*panels: np.ndarray, gap: int = 4) -> np.ndarray:
    """Frames of equal height next to each other, with a dark gap."""
    h = panels[0].shape[0]
    spacer = np.full((h, gap, 3), 32, np.uint8)
    parts = []
    for i, p in enumerate(panels):
        parts += ([spacer] if i else []) + [p]
    return np.concatenate(parts, axis=1)
