"""What a person looks at: a self-contained HTML report and a PNG contact sheet of ranked results."""
from __future__ import annotations

import base64
import html
import io
from datetime import datetime, timezone
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from app.evaluation.compare import Comparison
from app.files.images import ImageError, load_image

GOOD, BAD, QUERY = (34, 160, 60), (200, 50, 50), (40, 90, 200)


def thumbnail(path: str, size: int = 150) -> Image.Image:
    try:
        image = load_image(Path(path), min_side=size)
    except (ImageError, OSError):
        image = Image.new("RGB", (size, size), (128, 128, 128))
    image.thumbnail((size, size))
    return image


def _data_uri(image: Image.Image) -> str:
    buf = io.BytesIO()
    image.save(buf, "JPEG", quality=80)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode()


def _bar_chart(comparison: Comparison) -> str:
    rows = comparison.ranked()
    width, bar_h, left = 760, 22, 290
    height = bar_h * len(rows) + 30
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
             f'aria-label="mAP per model">']
    for i, r in enumerate(rows):
        value = r.evaluation.summary.map
        y = 10 + i * bar_h
        w = (width - left - 60) * value
        parts.append(f'<text x="{left - 8}" y="{y + 15}" text-anchor="end" font-size="13">'
                     f'{html.escape(r.evaluation.model)} / {html.escape(r.evaluation.method)}</text>')
        parts.append(f'<rect x="{left}" y="{y + 2}" width="{w:.1f}" height="{bar_h - 6}" fill="#3a7bd5"/>')
        parts.append(f'<text x="{left + w + 6:.1f}" y="{y + 15}" font-size="13">{value:.3f}</text>')
    parts.append("</svg>")
    return "".join(parts)


def write_html(comparison: Comparison, path: Path, top: int = 10) -> Path:
    cache: dict[str, str] = {}

    def img(p: str, css: str) -> str:
        if p not in cache:
            cache[p] = _data_uri(thumbnail(p))
        return f'<img src="{cache[p]}" class="{css}" alt="{html.escape(Path(p).name)}">'

    metrics = "".join(
        f"<tr><td>{html.escape(r.evaluation.model)}</td><td>{r.evaluation.method}</td>"
        f"<td>{r.evaluation.summary.map:.3f}</td><td>{r.evaluation.summary.p_at_1:.3f}</td>"
        f"<td>{r.evaluation.summary.p_at_r:.3f}</td><td>{r.evaluation.summary.recall_at_1:.3f}</td>"
        f"<td>{r.evaluation.summary.recall_at_k:.3f}</td>"
        f"<td>{'' if r.embed_ms is None else f'{r.embed_ms:.1f}'}</td></tr>"
        for r in comparison.ranked())
    skipped = "".join(f"<li><b>{html.escape(m)}</b>: {html.escape(reason)}</li>"
                      for m, reason in comparison.skipped.items())
    sections = []
    for r in comparison.ranked():
        relevant = r.relevant
        cells = []
        for rank, hit in enumerate(r.query_hits[:top + 1], 0):
            css = "query" if hit.image_id == comparison.query_id else ("good" if hit.image_id in relevant else "bad")
            cells.append(f'<figure>{img(hit.path, css)}<figcaption>{rank}. {html.escape(Path(hit.path).name)}'
                         f'<br>{hit.distance:.4f} {html.escape(hit.label or "")}</figcaption></figure>')
        sections.append(f"<h3>{html.escape(r.evaluation.model)} / {html.escape(r.evaluation.method)} "
                        f"<small>mAP {r.evaluation.summary.map:.3f}"
                        f"</small></h3><div class='row'>{''.join(cells)}</div>")
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    document = f"""<!doctype html><html><head><meta charset="utf-8"><title>imgsim: {html.escape(comparison.dataset)}</title>
<style>body{{font-family:sans-serif;margin:24px}} table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}} td:first-child{{text-align:left}}
.row{{display:flex;flex-wrap:wrap;gap:6px}} figure{{margin:0;width:154px;font-size:11px}}
img{{border:4px solid #ccc;max-width:150px;max-height:150px}} img.good{{border-color:#22a03c}}
img.bad{{border-color:#c83232}} img.query{{border-color:#285ac8}}</style></head><body>
<h1>imgsim model comparison</h1>
<p>Dataset <code>{html.escape(comparison.dataset)}</code>, {when}. Query for the ranked rows:
<code>{html.escape(comparison.query_name)}</code>. Borders: blue = query, green = same group, red = other.</p>
<h2>Metrics (best first)</h2>
<table><tr><th>model</th><th>method</th><th>mAP</th><th>P@1</th><th>P@R</th><th>recall@1</th>
<th>recall@k</th><th>embed ms/image</th></tr>{metrics}</table>
<h2>mAP per model</h2>{_bar_chart(comparison)}
{f"<h2>Skipped</h2><ul>{skipped}</ul>" if skipped else ""}
<h2>Ranked results for the query</h2>{''.join(sections)}
</body></html>"""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(document, encoding="utf-8")
    return path


def write_contact_sheet(comparison: Comparison, path: Path, top: int = 8, size: int = 110) -> Path:
    rows = comparison.ranked()
    label_w, pad = 170, 6
    sheet = Image.new("RGB", (label_w + (top + 1) * (size + pad) + pad, max(1, len(rows)) * (size + 2 * pad) + pad),
                      (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default(size=13)
    for row, r in enumerate(rows):
        y = pad + row * (size + 2 * pad)
        draw.text((pad, y + size // 2 - 22), r.evaluation.model, fill=(0, 0, 0), font=font)
        draw.text((pad, y + size // 2 - 6), r.evaluation.method, fill=(0, 0, 0), font=font)
        draw.text((pad, y + size // 2 + 10), f"mAP {r.evaluation.summary.map:.3f}", fill=(80, 80, 80), font=font)
        relevant = r.relevant
        for col, hit in enumerate(r.query_hits[:top + 1]):
            colour = QUERY if hit.image_id == comparison.query_id else GOOD if hit.image_id in relevant else BAD
            x = label_w + col * (size + pad)
            thumb = thumbnail(hit.path, size - 8)
            draw.rectangle([x, y, x + size - 1, y + size - 1], fill=colour)
            sheet.paste(thumb, (x + (size - thumb.width) // 2, y + (size - thumb.height) // 2))
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path)
    return path
