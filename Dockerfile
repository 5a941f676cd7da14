# Diff-BGM web app: composing + listening studies, CPU only.
#   docker build -t diffbgm .
#   docker run -p 7860:7860 -v diffbgm-data:/data -e DIFFBGM_ADMIN_TOKEN=... diffbgm
# Also runs as a Hugging Face Docker Space (uid 1000, port 7860, /data as persistent storage).
# scripts/check_image.sh builds and runs this file with buildah and composes the example
# clip through the API (docs/image.md has its output).
FROM python:3.11-slim

# FluidSynth renders the MIDI to audio with the full General MIDI soundfont FluidR3_GM
# (fluid-soundfont-gm, 148 MB; without it TimGM6mb from pretty_midi, docs/sound.md); ffmpeg
# comes from the imageio-ffmpeg wheel. No libGL: OpenCV is the headless build
# (requirements.txt), checked below.
RUN apt-get update \
    && apt-get install -y --no-install-recommends fluidsynth fluid-soundfont-gm \
    && rm -rf /var/lib/apt/lists/*

# Non-root: Spaces run the container as uid 1000, so the same user works everywhere.
RUN useradd --create-home --uid 1000 user \
    && mkdir -p /data \
    && chown user:user /data
USER user
ENV HOME=/home/user \
    VIRTUAL_ENV=/home/user/venv \
    PATH=/home/user/venv/bin:/home/user/.local/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_PROGRESS_BAR=off \
    GRADIO_SERVER_NAME=0.0.0.0 \
    GRADIO_SERVER_PORT=7860 \
    GRADIO_ANALYTICS_ENABLED=False \
    DIFFBGM_DATA_DIR=/data \
    MPLCONFIGDIR=/tmp/matplotlib
WORKDIR /home/user/app

# torch==2.13.0 from PyPI pulls CUDA 13 packages (cuda-toolkit, nvidia-cudnn, triton: GBs);
# the PyTorch CPU index serves 2.13.0+cpu (~190 MB), which pip prefers (a local version sorts
# higher). A build host that cannot reach that index passes --build-arg TORCH_INDEX_URL= and
# mounts a folder with the CPU wheel at /tmp/wheels (buildah bud -v DIR:/tmp/wheels:ro, as
# scripts/check_image.sh does; a ca-bundle.crt there is used for pip's TLS, for hosts behind
# an intercepting proxy). Nothing of it stays in the image.
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu

# Dependencies first, so code changes do not reinstall them. The check after the install fails
# the build if CUDA packages or the GUI OpenCV (needs libGL) got in.
COPY --chown=user:user requirements.txt ./
RUN if [ -f /tmp/wheels/ca-bundle.crt ]; then export PIP_CERT=/tmp/wheels/ca-bundle.crt; fi \
    && python -m venv "$VIRTUAL_ENV" \
    && pip install $([ -d /tmp/wheels ] && echo --find-links /tmp/wheels) \
        ${TORCH_INDEX_URL:+--extra-index-url "$TORCH_INDEX_URL"} \
        -r requirements.txt \
    && python -c "import importlib.metadata as m, sys; \
names = sorted(d.metadata['Name'].lower() for d in m.distributions()); \
bad = [n for n in names if n.startswith(('nvidia-', 'cuda-', 'triton')) or n in ('opencv-python', 'scenedetect')]; \
print('torch', m.version('torch'), '| unwanted:', bad or 'none'); \
sys.exit(1 if bad else 0)"

# Metadata before the code: with layered builds only the COPY below changes on a code edit.
EXPOSE 7860
# /healthz answers 200 only when the model, FluidSynth, ffmpeg, the database and a start-up
# self-test compose are all ok (webapp/health.py); `python -m webapp.health` exits 1 otherwise.
HEALTHCHECK --interval=30s --timeout=10s --start-period=180s --retries=3 \
    CMD ["python", "-m", "webapp.health"]

CMD ["python", "app.py"]

COPY --chown=user:user . .

# FETCH_CLIP=1 puts the CLIP weights of DIFFBGM_CLIP=auto (openai/clip-vit-base-patch32, ~600 MB)
# into the image's Hugging Face cache, so shots are read by CLIP without network at run time;
# the default leaves them out (a smaller image; `auto` then downloads them on the first compose
# where the Hub answers, else reads shots from picture statistics). The build fails if it fails.
ARG FETCH_CLIP=0
RUN if [ "$FETCH_CLIP" = 1 ]; then python scripts/fetch_clip.py; fi
