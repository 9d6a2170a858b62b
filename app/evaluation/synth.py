"""A generated "calendar" photo set: two pages that share a layout but differ in month grid
and picture, each shot as phone-like photos (perspective, crop, rotation, light, blur, JPEG).

Used by the demo and the tests; deterministic for a given seed.
"""
from __future__ import annotations

import calendar
import csv
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

PAGE_W, PAGE_H = 900, 1200
MONTHS = {1: "january", 2: "february"}


def _font(size: int):
    return ImageFont.load_default(size=size)


def _picture(month: int, rng: np.random.Generator, w: int, h: int) -> Image.Image:
    """A distinct illustration per month, in the same palette (so global colour barely differs)."""
    img = Image.new("RGB", (w, h), (120, 170, 215))
    d = ImageDraw.Draw(img)
    if month == 1:  # snowy mountains and a cabin
        d.rectangle([0, h * 0.6, w, h], fill=(235, 240, 245))
        for x0, peak in ((-80, 0.18), (220, 0.08), (480, 0.22)):
            d.polygon([(x0, h * 0.7), (x0 + 260, h * peak), (x0 + 520, h * 0.7)], fill=(90, 110, 140))
            d.polygon([(x0 + 200, h * (peak + 0.1)), (x0 + 260, h * peak), (x0 + 320, h * (peak + 0.1))],
                      fill=(250, 250, 250))
        d.rectangle([w * 0.62, h * 0.55, w * 0.8, h * 0.75], fill=(150, 80, 50))
        d.polygon([(w * 0.6, h * 0.55), (w * 0.71, h * 0.42), (w * 0.82, h * 0.55)], fill=(110, 50, 40))
    else:  # a lake with plum trees and a bridge
        d.rectangle([0, h * 0.55, w, h], fill=(70, 120, 170))
        d.arc([w * 0.15, h * 0.35, w * 0.85, h * 0.95], 180, 360, fill=(160, 60, 50), width=18)
        for cx in (0.1, 0.3, 0.75, 0.9):
            d.rectangle([w * cx - 8, h * 0.3, w * cx + 8, h * 0.6], fill=(90, 60, 40))
            for _ in range(25):
                x, y = w * cx + rng.normal(0, 40), h * 0.28 + rng.normal(0, 30)
                d.ellipse([x - 9, y - 9, x + 9, y + 9], fill=(235, 150, 180))
    for _ in range(60):  # texture so the pictures are not flat
        x, y = rng.uniform(0, w), rng.uniform(0, h)
        d.point((x, y), fill=tuple(int(c) for c in rng.integers(80, 255, 3)))
    return img


def render_page(month: int, year: int = 2026, seed: int = 0) -> Image.Image:
    """One calendar page: header, picture, month grid (same layout for every month)."""
    rng = np.random.default_rng(seed + month)
    page = Image.new("RGB", (PAGE_W, PAGE_H), (250, 248, 240))
    d = ImageDraw.Draw(page)
    d.rectangle([0, 0, PAGE_W, 90], fill=(40, 60, 90))
    d.text((40, 18), f"{year}  {calendar.month_name[month].upper()}", font=_font(52), fill=(255, 255, 255))
    d.text((PAGE_W - 120, 18), f"{month:02d}", font=_font(52), fill=(255, 220, 120))
    page.paste(_picture(month, rng, PAGE_W - 80, 520), (40, 110))
    top, cell_w, cell_h = 660, (PAGE_W - 80) // 7, 85
    for i, name in enumerate(("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")):
        d.text((40 + i * cell_w + 30, top), name, font=_font(26), fill=(200, 40, 40) if i == 0 else (40, 40, 40))
    weeks = calendar.Calendar(firstweekday=6).monthdayscalendar(year, month)
    for r, week in enumerate(weeks):
        for c, day in enumerate(week):
            x, y = 40 + c * cell_w, top + 40 + r * cell_h
            d.rectangle([x, y, x + cell_w, y + cell_h], outline=(180, 180, 180), width=2)
            if day:
                d.text((x + 12, y + 8), str(day), font=_font(36), fill=(200, 40, 40) if c == 0 else (30, 30, 30))
    return page


def photograph(page: Image.Image, rng: np.random.Generator, out_size=(1024, 768)) -> Image.Image:
    """Shoot ``page`` on a wall: perspective, rotation, crop, lighting, blur, noise."""
    w_out, h_out = out_size
    wall = np.full((h_out, w_out, 3), rng.integers(150, 210, 3), np.float32)
    wall += rng.normal(0, 6, wall.shape)
    src = np.float32([[0, 0], [page.width, 0], [page.width, page.height], [0, page.height]])
    scale = rng.uniform(0.5, 0.75) * h_out / page.height
    cw, ch = page.width * scale, page.height * scale
    cx, cy = w_out / 2 + rng.uniform(-0.15, 0.15) * w_out, h_out / 2 + rng.uniform(-0.08, 0.08) * h_out
    angle = np.deg2rad(rng.uniform(-12, 12))
    corners = np.array([[-cw / 2, -ch / 2], [cw / 2, -ch / 2], [cw / 2, ch / 2], [-cw / 2, ch / 2]])
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    dst = corners @ rot.T + [cx, cy] + rng.normal(0, 0.04 * cw, (4, 2))
    matrix = cv2.getPerspectiveTransform(src, np.float32(dst))
    warped = cv2.warpPerspective(np.asarray(page, np.float32), matrix, (w_out, h_out))
    mask = cv2.warpPerspective(np.ones(page.size[::-1], np.float32), matrix, (w_out, h_out))[..., None]
    shot = wall * (1 - mask) + warped * mask
    gx = np.linspace(rng.uniform(0.7, 1.0), rng.uniform(0.9, 1.2), w_out)[None, :, None]
    shot = shot * gx * rng.uniform(0.8, 1.15) + rng.normal(0, 4, shot.shape)
    image = Image.fromarray(np.clip(shot, 0, 255).astype(np.uint8))
    crop = rng.uniform(0, 0.08, 4) * [w_out, h_out, w_out, h_out]
    image = image.crop((crop[0], crop[1], w_out - crop[2], h_out - crop[3])).resize(out_size)
    return image.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.6)))


def make_calendar_set(folder: Path, photos_per_page: int = 9, seed: int = 7) -> Path:
    """Write ``1.jpg``..``N.jpg`` (January first, then February) and ``labels.csv``; return the CSV."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    rows, index = [], 1
    for month, label in MONTHS.items():
        page = render_page(month, seed=seed)
        for _ in range(photos_per_page):
            name = f"{index}.jpg"
            photograph(page, rng).save(folder / name, quality=int(rng.integers(75, 95)))
            rows.append((name, label))
            index += 1
    labels = folder / "labels.csv"
    with open(labels, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["filename", "label"])
        writer.writerows(rows)
    return labels
