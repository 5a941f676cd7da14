# Diff-BGM web app: composing + listening studies, CPU only.
#   docker build -t diffbgm .
#   docker run -p 7860:7860 -v diffbgm-data:/data -e DIFFBGM_ADMIN_TOKEN=... diffbgm
# Also runs as a Hugging Face Docker Space (uid 1000, port 7860, /data as persistent storage).
FROM python:3.11-slim

# FluidSynth renders the MIDI to audio; ffmpeg comes from the imageio-ffmpeg wheel.
RUN apt-get update \
    && apt-get install -y --no-install-recommends fluidsynth \
    && rm -rf /var/lib/apt/lists/*

# Non-root: Spaces run the container as uid 1000, so the same user works everywhere.
RUN useradd --create-home --uid 1000 user \
    && mkdir -p /data \
    && chown user:user /data
USER user
ENV HOME=/home/user \
    PATH=/home/user/.local/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    GRADIO_SERVER_NAME=0.0.0.0 \
    GRADIO_SERVER_PORT=7860 \
    GRADIO_ANALYTICS_ENABLED=False \
    DIFFBGM_DATA_DIR=/data \
    MPLCONFIGDIR=/tmp/matplotlib
WORKDIR /home/user/app

# Dependencies first, so code changes do not reinstall them. The PyTorch CPU index serves
# the pinned torch without the multi-GB CUDA libraries PyPI's Linux wheel pulls in.
COPY --chown=user:user requirements.txt .
RUN pip install --user -r requirements.txt \
        --extra-index-url https://download.pytorch.org/whl/cpu

COPY --chown=user:user . .

EXPOSE 7860
# Gradio answers on / once the app (and its start-up migration) is up.
HEALTHCHECK --interval=30s --timeout=10s --start-period=120s --retries=3 \
    CMD python -c "import urllib.request as u; u.urlopen('http://127.0.0.1:7860/', timeout=8)" || exit 1

CMD ["python", "app.py"]
