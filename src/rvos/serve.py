"""``rvos serve``: a web page to run a trained model on an uploaded video (or a synthetic sample).

Type one sentence per line, get the overlay video (each sentence its colour) and a zip of the per-frame masks.
Uploads over ``max_upload_mb`` and videos over ``max_frames`` frames are refused with a message; every request
works in a temporary folder of its own.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import zipfile
from pathlib import Path

from rvos.api import Segmenter, predict_to_folder
from rvos.data.video import open_video
from rvos.errors import RvosError

log = logging.getLogger(__name__)


def make_samples(folder: Path, count: int = 3) -> dict[str, Path]:
    """A few synthetic benchmark videos as MP4 files, with sentences that refer to their objects."""
    from rvos.data.synth.generate import SynthSpec, make_video
    from rvos.viz.video_io import write_video

    spec = SynthSpec(seed=1234)
    samples = {}
    for i in range(count):
        frames, _, _, expressions = make_video(spec, "sample", i)
        text = expressions[0].text
        path = folder / f"sample_{i}.mp4"
        write_video(path, list(frames), fps=6)
        samples[f"sample {i}: {text}"] = path
    return samples


def build_app(segmenter: Segmenter, max_frames: int = 300, max_upload_mb: float = 50.0, workdir: Path | None = None):
    import gradio as gr

    workdir = Path(workdir or tempfile.mkdtemp(prefix="rvos-serve-"))
    samples = make_samples(workdir / "samples")

    def segment(upload, sample, sentences):
        texts = [line.strip() for line in (sentences or "").splitlines() if line.strip()]
        if not texts:
            raise gr.Error("Type at least one sentence (one per line), e.g. 'the red circle moving left'.")
        path = upload or (samples[sample] if sample else None)
        if path is None:
            raise gr.Error("Upload a video or pick a sample.")
        if upload and Path(upload).stat().st_size > max_upload_mb * 2**20:
            raise gr.Error(f"The video is larger than {max_upload_mb:g} MB.")
        request_dir = Path(tempfile.mkdtemp(prefix="request-", dir=workdir))
        try:
            source = open_video(path)
            if source.num_frames > max_frames:
                raise gr.Error(f"The video has {source.num_frames} frames; this server takes at most {max_frames}.")
            out = request_dir / "prediction"
            summary = predict_to_folder(segmenter, source, texts, out, progress=False)
            archive = request_dir / "masks.zip"
            with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
                for png in sorted((out / "masks").rglob("*.png")):
                    zf.write(png, png.relative_to(out))
                zf.write(out / "result.json", "result.json")
        except RvosError as exc:
            shutil.rmtree(request_dir, ignore_errors=True)
            raise gr.Error(str(exc)) from None
        lines = [f"- **{s['text']}**: a mask in {s['frames_with_mask']} of {summary['frames']} frames"
                 for s in summary["sentences"]]
        return str(out / "overlay.mp4"), str(archive), "\n".join(lines)

    with gr.Blocks(title="rvos") as app:
        gr.Markdown("# rvos: segment what a sentence refers to\nUpload a video (or pick a synthetic sample), type "
                    "one sentence per line, press **Segment**.")
        with gr.Row():
            with gr.Column():
                upload = gr.Video(label="video", sources=["upload"], elem_id="upload")
                sample = gr.Dropdown(choices=list(samples), value=next(iter(samples)), label="or a sample",
                                     elem_id="sample")
                sentences = gr.Textbox(label="sentences (one per line)", lines=3, elem_id="sentences",
                                       value=next(iter(samples)).split(": ", 1)[1])
                button = gr.Button("Segment", variant="primary", elem_id="segment")
            with gr.Column():
                result = gr.Video(label="overlay", elem_id="overlay", interactive=False)
                masks = gr.File(label="masks (zip)", elem_id="masks")
                summary = gr.Markdown(elem_id="summary")
        button.click(segment, [upload, sample, sentences], [result, masks, summary])
    app.rvos_workdir = workdir
    return app


def serve(segmenter: Segmenter, port: int = 7860, host: str = "127.0.0.1", max_frames: int = 300,
          max_upload_mb: float = 50.0, announce=None) -> None:
    """Serve until interrupted; ``announce(url)`` is called once the page is up (Gradio's own messages, such as its
    hint about public share links, are not shown)."""
    app = build_app(segmenter, max_frames, max_upload_mb)
    try:
        _, url, _ = app.queue().launch(server_name=host, server_port=port, max_file_size=f"{max_upload_mb:g}mb",
                                       allowed_paths=[str(app.rvos_workdir)], share=False, show_error=True,
                                       quiet=True, prevent_thread_lock=True)
        if announce is not None:
            announce(url)
        app.block_thread()
    finally:
        shutil.rmtree(app.rvos_workdir, ignore_errors=True)
