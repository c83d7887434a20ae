"""The phases each kind of component runs, owned by the phases layer (the contracts in ``pipeline/core`` know
nothing of phases): a source reads its shards, a global stage scans, steps and applies, any other stage applies
per shard. A component class that defines its own ``phases()`` runs those instead."""

from __future__ import annotations

from pipeline.core.component import Component
from pipeline.core.global_stage import GlobalStage
from pipeline.core.source import Source
from pipeline.phases.apply import ApplyPhase, SourcePhase
from pipeline.phases.global_phases import global_phases
from pipeline.phases.phase import Phase


def phases_of(component: Component) -> list[Phase]:
    own = getattr(component, "phases", None)
    if callable(own):
        return own()
    if isinstance(component, Source):
        return [SourcePhase()]
    if isinstance(component, GlobalStage):
        return global_phases(component)
    return [ApplyPhase()]
