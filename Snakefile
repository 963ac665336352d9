# safefakes: what face anonymization costs a face detector.
# Thin entry point: the rules live in workflow/rules/, the configuration is validated by
# workflow/schemas/config.schema.yaml. `config.yaml` is the demo preset; select another with
# `--configfile config/paper.yaml`.

import shlex
from pathlib import Path

from snakemake.utils import min_version

min_version("9.0")


# The demo preset is the default. A preset given with --configfile replaces it (Snakemake would otherwise merge
# the two, and the demo's reduced method lists and iteration points would leak into config/paper.yaml).
if not getattr(getattr(workflow, "config_settings", None), "configfiles", None):

    configfile: "config.yaml"


# Rules run `python -m safefakes` from this checkout's src/, so the same code runs in the local
# virtualenv and in the conda environments of `--sdm conda` (which do not install the package).
shell.prefix(f"export PYTHONPATH={shlex.quote(str(Path(workflow.basedir) / 'src'))}${{{{PYTHONPATH:+:$PYTHONPATH}}}}; ")


include: "workflow/rules/paths.smk"
include: "workflow/rules/config.smk"
include: "workflow/rules/planning.smk"
include: "workflow/rules/targets.smk"
include: "workflow/rules/checks.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/anonymize.smk"
include: "workflow/rules/gans.smk"
include: "workflow/rules/detect.smk"
include: "workflow/rules/plots.smk"
include: "workflow/rules/privacy.smk"


rule all:
    default_target: True
    input:
        all_targets(),
