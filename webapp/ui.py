"""The Gradio Blocks of the web app: tabs Compose, Listening study and Results/Admin.

Only layout and wiring live here; every event calls a method of `webapp.handlers.Handlers`.
The main events have stable API names (compose, regenerate, join_study, next_item, rate,
create_study, study_results, close_study) so scripts and tests drive them with
`gradio_client`.
"""

from __future__ import annotations

from typing import Any

import gradio as gr

from diffbgm.arrange.presets import ARRANGEMENTS, DEFAULT_ARRANGEMENT, PRESETS
from diffbgm.controls import DEFAULT_PLAYING, PLAYINGS
from webapp.components import quiet
from webapp.handlers import AUDIO_CHOICES, KEY_CHOICES, SHOT_COLUMNS, STEM_SLOTS, Handlers
from webapp.health import Health
from webapp.settings import ADMIN_TOKEN_MIN_LENGTH, EXAMPLE_LABELS, AppSettings

# Event groups: composes wait in their own queue (webapp.limits.ComposeGate), so Gradio takes
# every compose at once and admits or refuses it in a moment; participants and admins have
# their own groups, which a crowd of composes never fills.
COMPOSE_GROUP = "compose"
STUDY_GROUP = "study"
ADMIN_GROUP = "admin"
PLAYING_LABELS = {
    "even": "even: steady dynamics",
    "wide": "wide: expressive, louder and softer notes",
}

INTRO = """# Diff-BGM · piano background music for your video
Upload a clip: the app finds its shots, plans music whose sections change where the shots
change, and composes it with a diffusion model — offline, on this machine's CPU."""

STUDY_INTRO = """Watch each clip with its music and rate it. You do not learn which system
made which track, and your answers are stored without any personal data."""

CSS = """
#status-line {min-height: 2.5em}
.rating-row {gap: 1.5em}
.sheet-view {max-height: 640px; overflow: auto; background: #fff; border-radius: 6px}
.sheet-view svg {max-width: 100%; height: auto}
"""


def study_code_from_url(request: gr.Request) -> str:
    """The `?study=CODE` of the page address, so a shared link opens the right study."""
    params = dict(request.query_params) if request is not None else {}
    return str(params.get("study", "")).strip().lower()[:64]


def _compose_tab(handlers: Handlers, settings: AppSettings) -> None:
    with gr.Row():
        with gr.Column(scale=1):
            video = quiet(gr.Video(label="Your video", sources=["upload"], elem_id="video-in"))
            if settings.example_videos:
                gr.Examples(
                    examples=[[str(path)] for path in settings.example_videos],
                    inputs=[video],
                    label="Examples: "
                    + "; ".join(
                        EXAMPLE_LABELS.get(p.name, p.name) for p in settings.example_videos
                    ),
                    cache_examples=False,
                )
            mood = quiet(
                gr.Textbox(
                    label="Mood (optional)", value="", placeholder="e.g. calm and warm, playful"
                ),
                text_only=True,
            )
            with gr.Row():
                tempo = quiet(gr.Number(label="Tempo BPM (0 = from the video)", value=0, minimum=0))
                key = quiet(gr.Dropdown(list(KEY_CHOICES), value="auto", label="Key"))
            density = quiet(
                gr.Slider(0, 1, value=0, step=0.05, label="Density (0 = follow the video)")
            )
            arrangement = quiet(
                gr.Dropdown(
                    [(f"{name}: {PRESETS[name].description}", name) for name in ARRANGEMENTS],
                    value=DEFAULT_ARRANGEMENT,
                    label="Arrangement (instruments)",
                    elem_id="arrangement",
                )
            )
            playing = quiet(
                gr.Radio(
                    [(PLAYING_LABELS[name], name) for name in PLAYINGS],
                    value=DEFAULT_PLAYING,
                    label="Playing (how loud and soft the notes are)",
                    elem_id="playing",
                )
            )
            with gr.Accordion("Where the music plays, your chords and sections", open=False):
                with gr.Row():
                    music_start = quiet(
                        gr.Textbox(
                            label="Music starts at (seconds or m:ss; empty = the video's start)",
                            value="",
                            placeholder="e.g. 0:04",
                            elem_id="music-start",
                        ),
                        text_only=True,
                    )
                    music_end = quiet(
                        gr.Textbox(
                            label="Music ends at (empty = the video's end)",
                            value="",
                            placeholder="e.g. 0:28",
                            elem_id="music-end",
                        ),
                        text_only=True,
                    )
                chords = quiet(
                    gr.Textbox(
                        label="Chords, one per bar, repeated to fill the piece (empty = "
                        "composed for you; the key follows them unless you choose one)",
                        value="",
                        placeholder="e.g. C G Am F, or | Dm7 | G7 | Cmaj7 | % |",
                        elem_id="chords",
                    ),
                    text_only=True,
                )
                sections = quiet(
                    gr.Textbox(
                        label="New sections start at (seconds or m:ss; added to the shot cuts)",
                        value="",
                        placeholder="e.g. 0:12, 31.5",
                        elem_id="sections",
                    ),
                    text_only=True,
                )
                sections_only = quiet(
                    gr.Checkbox(
                        label="Only there: ignore the shot cuts (with no times: the music "
                        "runs on across the cuts)",
                        value=False,
                        elem_id="sections-only",
                    )
                )
                form = quiet(
                    gr.Textbox(
                        label="Form: a letter per section, the opening first (A B A: the "
                        "third section takes up the first one's music)",
                        value="",
                        placeholder="e.g. A B A C",
                        elem_id="form",
                    ),
                    text_only=True,
                )
            with gr.Accordion("More settings", open=False):
                with gr.Row():
                    seed = quiet(gr.Number(label="Seed", value=0, precision=0))
                    variants = quiet(
                        gr.Number(
                            label="Variants", value=1, minimum=1, maximum=4, step=1, precision=0
                        )
                    )
                with gr.Row():
                    guidance = quiet(
                        gr.Number(label="Guidance (empty = model default)", value=None)
                    )
                    steps = quiet(
                        gr.Number(label="Steps (empty = model default)", value=None, precision=0)
                    )
                recall = quiet(
                    gr.Number(
                        label="Theme recall 0-1: how closely a returning scene repeats its music "
                        "(empty = model default)",
                        value=None,
                    )
                )
                candidates = quiet(
                    gr.Number(
                        label="Candidates per window 1-16: the window critic keeps the one most "
                        "like real music (slower: 4 take about 3 times as long; empty = model "
                        "default)",
                        value=None,
                        precision=0,
                    )
                )
                control_guidance = quiet(
                    gr.Number(
                        label="Control guidance 1-10: how closely the music follows the "
                        "register each shot asks for (1 = off; 2 adds about a sixth to the "
                        "compose time; empty = model default)",
                        value=None,
                    )
                )
                audio_mode = quiet(
                    gr.Radio(
                        list(AUDIO_CHOICES),
                        value="duck",
                        label="Original sound: duck (lowered under the music), keep, replace, "
                        "or dialogue (kept; the music dips while it is loud, for speech)",
                    )
                )
            compose_btn = gr.Button("Compose music", variant="primary", elem_id="compose-btn")
        with gr.Column(scale=2):
            summary = gr.Markdown(label="Summary", elem_id="result-summary")
            gallery = gr.Gallery(
                label="Shot timeline", columns=6, height=180, object_fit="cover", elem_id="shots"
            )
            with gr.Row():
                video_out = gr.Video(label="Video with music", elem_id="video-out")
                with gr.Column():
                    audio_out = gr.Audio(label="Music", type="filepath", elem_id="audio-out")
                    downloads = gr.File(label="Downloads", file_count="multiple")
            pianoroll = gr.Image(label="Piano roll (red lines: shot cuts)", type="filepath")
            # one player per part of the score (hidden for a single part: it is the mix)
            stem_players = [
                gr.Audio(
                    label=f"Stem {n + 1}",
                    type="filepath",
                    visible=False,
                    interactive=False,
                    elem_id=f"stem-{n + 1}",
                )
                for n in range(STEM_SLOTS)
            ]
            with gr.Accordion("Sheet music", open=True):
                sheet = gr.HTML(label="Sheet music", elem_id="sheet-view")
            with gr.Accordion("Shots and music segments", open=False):
                shots_table = gr.Dataframe(headers=SHOT_COLUMNS, label="Shots", interactive=False)
                segments_table = gr.Dataframe(label="Segments", interactive=False)
            with gr.Group():
                gr.Markdown("**Regenerate one segment** (the rest of the music is kept)")
                with gr.Row():
                    segment = gr.Number(label="Segment", value=1, minimum=1, precision=0)
                    regen_seed = gr.Number(label="New seed", value=1, precision=0)
                    regen_density = gr.Slider(0, 1, value=0, step=0.05, label="Density (0 = keep)")
                regen_btn = gr.Button("Regenerate segment", elem_id="regen-btn")
            result_name = gr.Textbox(visible=False, label="Result name")

    outputs = [
        summary,
        gallery,
        shots_table,
        segments_table,
        pianoroll,
        audio_out,
        video_out,
        downloads,
        result_name,
        segment,
        sheet,
        *stem_players,
    ]
    compose_btn.click(
        handlers.compose,
        inputs=[
            video,
            mood,
            tempo,
            key,
            density,
            seed,
            guidance,
            steps,
            variants,
            audio_mode,
            recall,
            arrangement,
            candidates,
            control_guidance,
            chords,
            sections,
            sections_only,
            form,
            music_start,
            music_end,
            playing,
        ],
        outputs=outputs,
        api_name="compose",
        concurrency_limit=None,
        concurrency_id=COMPOSE_GROUP,
    )
    regen_btn.click(
        handlers.regenerate,
        inputs=[result_name, segment, regen_seed, regen_density],
        outputs=outputs,
        api_name="regenerate",
        concurrency_limit=None,
        concurrency_id=COMPOSE_GROUP,
        preprocess=False,  # raw values, checked by the handler (see _study_tab)
    )


def _study_tab(handlers: Handlers, settings: AppSettings, demo: gr.Blocks) -> None:
    gr.Markdown(STUDY_INTRO)
    with gr.Row():
        code = gr.Textbox(label="Study code", placeholder="e.g. pilot-3f9a2c", elem_id="study-code")
        join_btn = gr.Button("Join", variant="primary", elem_id="join-btn")
    token = gr.Textbox(visible=False, label="participant")
    trial_key = gr.Textbox(visible=False, label="trial")
    status = gr.Markdown(elem_id="trial-status")
    with gr.Row():
        with gr.Column():
            video_a = gr.Video(label="Video with music", interactive=False)
            audio_a = gr.Audio(label="Music", type="filepath", interactive=False)
        with gr.Column():
            video_b = gr.Video(
                label="Version B: video with music", interactive=False, visible=False
            )
            audio_b = gr.Audio(
                label="Version B: music", type="filepath", interactive=False, visible=False
            )
    scale = [(str(n), n) for n in range(1, 6)]
    with gr.Row(elem_classes="rating-row"):
        musicality = gr.Radio(
            scale,
            label="Musicality (1 poor - 5 excellent)",
            visible=False,
            type="value",
            elem_id="rate-musicality",
        )
        fit = gr.Radio(scale, label="Fit to the video", visible=False, elem_id="rate-fit")
        overall = gr.Radio(scale, label="Overall", visible=False, elem_id="rate-overall")
        choice = gr.Radio(
            ["A", "B"], label="Which do you prefer?", visible=False, elem_id="rate-choice"
        )
    with gr.Row():
        submit_btn = gr.Button("Submit and next", variant="primary", elem_id="rate-btn")
        next_btn = gr.Button("Skip to my next item")

    trial_outputs = [
        status,
        trial_key,
        video_a,
        audio_a,
        video_b,
        audio_b,
        musicality,
        fit,
        overall,
        choice,
    ]
    # preprocess=False: the handlers get the raw values and check them themselves, with a
    # clear message and one log line (Gradio's own checks print a traceback per refusal, and
    # components changed by gr.update are rebuilt from their class, see webapp.components).
    study_group: dict[str, Any] = {
        "concurrency_id": STUDY_GROUP,
        "concurrency_limit": settings.study_concurrency,
        "preprocess": False,
    }
    join_btn.click(
        handlers.join_study,
        inputs=[code],
        outputs=[token, *trial_outputs],
        api_name="join_study",
        **study_group,
    )
    next_btn.click(
        handlers.next_item,
        inputs=[token],
        outputs=trial_outputs,
        api_name="next_item",
        **study_group,
    )
    submit_btn.click(
        handlers.rate,
        inputs=[token, trial_key, musicality, fit, overall, choice],
        outputs=trial_outputs,
        api_name="rate",
        **study_group,
    )
    demo.load(
        study_code_from_url,
        inputs=None,
        outputs=[code],
        api_visibility="private",
        queue=False,  # instant, and never behind anything in a queue
    )


def _admin_tab(handlers: Handlers, settings: AppSettings, demo: gr.Blocks) -> None:
    if not settings.admin_enabled:
        gr.Markdown(
            "Admin actions are **off**: set `DIFFBGM_ADMIN_TOKEN` to a long random secret "
            f"(at least {ADMIN_TOKEN_MIN_LENGTH} characters) and restart the app to create "
            "studies and see results."
        )
    admin_token = gr.Textbox(label="Admin token", type="password", elem_id="admin-token")
    with gr.Accordion("Create a study from composed results", open=True):
        with gr.Row():
            title = gr.Textbox(label="Title", value="Listening study")
            kind = gr.Radio(["likert", "ab"], value="likert", label="Kind (rate 1-5 or A/B)")
        with gr.Row():
            # Custom values let scripts name results directly; the handler checks every name.
            results = gr.Dropdown(
                choices=[],
                multiselect=True,
                allow_custom_value=True,
                label="Results (folders under the output dir)",
            )
            refresh_btn = gr.Button("Refresh list", size="sm")
        conditions = gr.Textbox(
            label="Condition per chosen result, same order, comma-separated",
            placeholder="e.g. full, no-sac, full, no-sac",
        )
        create_btn = gr.Button("Create study", variant="primary")
        created = gr.Markdown(latex_delimiters=[])  # titles are plain text, never LaTeX
    with gr.Row():
        code = gr.Textbox(label="Study code", elem_id="admin-study-code")
        results_btn = gr.Button("Show results")
        close_btn = gr.Button("Close study", variant="stop")
    summary = gr.Markdown(latex_delimiters=[])
    table = gr.Dataframe(label="Per condition (means, 95 % CI)", interactive=False)
    plot = gr.Plot(label="Means with 95 % confidence intervals")
    csv_file = gr.File(label="CSV export")

    admin_group: dict[str, Any] = {
        "concurrency_id": ADMIN_GROUP,
        "concurrency_limit": 2,
        "preprocess": False,  # raw values, checked by the handlers (see _study_tab)
    }
    # Only an admin may list results: their folder names would let anyone fetch uploads.
    refresh_btn.click(
        handlers.result_choices,
        inputs=[admin_token],
        outputs=[results],
        api_visibility="private",
        **admin_group,
    )
    create_btn.click(
        handlers.create_study,
        inputs=[admin_token, title, kind, results, conditions],
        outputs=[created, code],
        api_name="create_study",
        **admin_group,
    )
    results_btn.click(
        handlers.study_results,
        inputs=[admin_token, code],
        outputs=[summary, table, plot, csv_file],
        api_name="study_results",
        **admin_group,
    )
    close_btn.click(
        handlers.close_study,
        inputs=[admin_token, code],
        outputs=[summary],
        api_name="close_study",
        **admin_group,
    )


def build_app(settings: AppSettings, handlers: Handlers | None = None) -> gr.Blocks:
    """The whole app as Gradio Blocks, queued but not launched (see app.py).

    Without `handlers`, the real ones are made: the ratings store is migrated and the model
    is loaded lazily on first use (app.py starts a self-test compose that loads it).
    """
    handlers = handlers or Handlers.create(settings)
    # Result, study and export files are served from where they lie, not copied into Gradio's
    # temporary folder: a file removed by the clean-up is gone for good, and no copy of a
    # user's video outlives its result.
    gr.set_static_paths(served_paths(settings))
    with gr.Blocks(title="Diff-BGM", analytics_enabled=False) as demo:
        gr.Markdown(INTRO)
        with gr.Tabs():
            with gr.Tab("Compose", id="compose"):
                _compose_tab(handlers, settings)
            with gr.Tab("Listening study", id="study"):
                _study_tab(handlers, settings, demo)
            with gr.Tab("Results/Admin", id="admin"):
                _admin_tab(handlers, settings, demo)
    demo.queue(
        # Light events only (composes never wait here, see COMPOSE_GROUP); a burst of
        # ratings far beyond any study's size still fits.
        max_size=settings.queue_size,
        default_concurrency_limit=settings.study_concurrency,
    )
    return demo


def served_paths(settings: AppSettings) -> list[str]:
    """Folders (and the example videos) Gradio serves in place instead of copying."""
    return [*settings.served_dirs, *(str(path) for path in settings.example_videos)]


def launch_options(settings: AppSettings, health: Health | None = None) -> dict[str, Any]:
    """Keyword arguments for `Blocks.launch` that the settings decide; with `health`, the app
    also answers `GET /healthz` (a route given to Gradio's FastAPI app when it is made, so it
    exists from the first request and ahead of Gradio's own routes)."""
    extra: dict[str, Any] = {}
    if health is not None:
        extra["app_kwargs"] = {"routes": [health.route()]}
    return {
        **extra,
        "server_name": settings.host,
        "server_port": settings.port,
        "max_file_size": settings.max_upload_bytes,
        "max_threads": settings.max_threads,
        "allowed_paths": settings.served_dirs,
        "show_error": False,
        "footer_links": ["api"],
        "css": CSS,
    }
