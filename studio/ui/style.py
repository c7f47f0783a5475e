"""Page-wide styling: small images (the shapes world's 64 px scenes) shown large and sharp, and
score plots whose legend (drawn below the plot, outside its frame) is not cut off.

Gradio shows an image no larger than its file (``object-fit: scale-down``), so a 64 px image is a
64 px speck in a 300 px frame, and the before/after slider sizes its images to the frame's width,
cropping them at the frame's height. Here every image fills its frame (keeping its aspect ratio),
and a small script marks images of at most ``SMALL_PX`` pixels a side, which the browser then scales
up with nearest-neighbour resampling instead of blurring them.
"""

from __future__ import annotations

#: Images up to this many pixels a side are drawn with nearest-neighbour resampling.
SMALL_PX = 256

CSS = """
.image-frame img, .rr-image img {object-fit: contain !important}
.image-frame {padding-top: 28px; box-sizing: border-box}  /* clear of the label and buttons above */
.rr-slider .slider-wrap img {width: 100% !important; height: 100% !important; max-height: none !important;
  object-fit: contain !important}
.rr-slider .slider-wrap, .rr-slider .slider-wrap .wrap, .rr-slider .slider-wrap .content {height: 100%}
img.rr-small {image-rendering: pixelated}
.rr-plot, .rr-plot svg.marks {overflow: visible !important}
.rr-plot {margin-bottom: 3.5em}
"""

#: Run once when the page loads: mark small images (present and future) as ``rr-small``.
JS = f"""
() => {{
  const mark = (img) => img.classList.toggle('rr-small',
    img.naturalWidth > 0 && img.naturalWidth <= {SMALL_PX} && img.naturalHeight <= {SMALL_PX});
  document.addEventListener('load', (e) => {{ if (e.target instanceof HTMLImageElement) mark(e.target); }}, true);
  document.querySelectorAll('img').forEach((img) => {{ if (img.complete) mark(img); }});
}}
"""
