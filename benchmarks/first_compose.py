"""The first compose after the app starts, against the next one, through the real app.

    python benchmarks/first_compose.py                       # the 30 s clip, the shipped model
    python benchmarks/first_compose.py --video diffbgm/assets/examples/shapes.mp4

Starts `python app.py` (a fresh data folder, 127.0.0.1), times how soon the page answers and how
soon `/healthz` says the app is warm (its start-up self-test compose loads the model, the mood
encoder and FluidSynth in the background), then composes the video twice through
`gradio_client` as a user would (a mood text, so the mood encoder is used) and prints the ratio
first / second. `--no-wait` composes as soon as the page answers, even before the warm-up ends
(what a user who uploads at once sees).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from app_server import running_app  # noqa: E402

CLIP = REPO.parent / "shared" / "data" / "videos" / "big_buck_bunny_0_30.webm"


def wait_warm(url: str, timeout_s: float = 600.0) -> float:
    """Seconds until GET /healthz answers 200 (the self-test compose has passed)."""
    from webapp.health import probe

    start = time.perf_counter()
    while time.perf_counter() - start < timeout_s:
        status, _ = probe(url.rstrip("/") + "/healthz")
        if status == 200:
            return time.perf_counter() - start
        time.sleep(0.25)
    raise SystemExit(f"/healthz did not turn healthy in {timeout_s:.0f} s")


def compose(client: object, video: Path, seed: int) -> float:
    from gradio_client import handle_file

    start = time.perf_counter()
    client.predict(  # type: ignore[attr-defined]
        handle_file(str(video)), mood="calm and warm", seed=seed, api_name="/compose"
    )
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--video", type=Path, default=CLIP)
    parser.add_argument("--model", default=str(REPO / "checkpoints" / "diffbgm-small"))
    parser.add_argument("--no-wait", action="store_true", help="compose before /healthz is up")
    args = parser.parse_args()
    if not args.video.exists():
        raise SystemExit(f"video not found: {args.video}")
    from gradio_client import Client

    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        env = {"DIFFBGM_MODEL": args.model, "DIFFBGM_MAX_UPLOAD_MB": "500"}
        with running_app(Path(tmp) / "data", env) as app:
            page_s = time.perf_counter() - started
            warm_s = None if args.no_wait else page_s + wait_warm(app.url)
            client = Client(app.url, verbose=False)
            first = compose(client, args.video, seed=0)
            second = compose(client, args.video, seed=1)
    print(f"video {args.video.name}, model {Path(args.model).name}")
    print(f"page answers after {page_s:.1f} s", end="")
    print("" if warm_s is None else f"; /healthz warm after {warm_s:.1f} s")
    print(f"| compose | seconds |\n|---|---|\n| first | {first:.2f} |\n| second | {second:.2f} |")
    print(f"first / second = {first / second:.2f} (target <= 1.3)")


if __name__ == "__main__":
    main()
