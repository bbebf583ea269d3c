"""Policy and sampling configuration (pydantic; defaults defined once here)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

RAY_BUILT_IN_RESOURCES = frozenset({"CPU", "GPU", "memory", "object_store_memory"})


def _custom_resources(resources: dict[str, float]) -> dict[str, float]:
    for name, amount in resources.items():
        if name in RAY_BUILT_IN_RESOURCES:
            raise ValueError(
                f"{name!r} is one of Ray's own resources: ask for GPUs with num_gpus; resources takes "
                "the custom resources of `ray start --resources` (e.g. {'learner_node': 1})"
            )
        if not amount >= 0:
            raise ValueError(f"resource {name!r}: {amount} must be 0 or more")
    return resources


RayResources = Annotated[dict[str, float], AfterValidator(_custom_resources)]
"""custom Ray resources an actor asks for (``ray start --resources '{"name": amount}'`` gives a node
them): places a role on the nodes that have them"""


class PolicyConfig(BaseModel):
    """Which language model acts as the policy, and where it runs."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    model: str = "tiny"
    """a preset (tiny, tiny-causal, t5-small-random; see models/loading.py), a local directory or a
    Hugging Face hub name (e.g. Salesforce/codet5-large-ntp-py)"""
    device: str = "auto"
    """auto (cuda when present, else cpu), cpu, cuda, cuda:1, ..."""
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    max_prompt_tokens: int = Field(default=600, ge=8)
    """longer prompts keep their end (the format line and answer marker); CodeRL uses 600"""
    max_program_tokens: int = Field(default=512, ge=8)
    """ground-truth programs are cut to this many tokens for training; CodeRL uses 512"""
    seed: int = 0
    """seeds the random initialisation of preset models"""
    decoder: Literal["auto", "static", "dynamic"] = "auto"
    """static: preallocated KV caches, with each finished row's slot refilled from the queue of
    programs to sample (actors/static_decode.py); dynamic: growing caches, ``batch_size`` programs
    decoded together until their longest ends (actors/sampling.py); auto: static for the
    architectures its exactness tests cover (t5, gpt2, llama, mistral, qwen2, ...; see
    actors/static_cache.py), dynamic for others"""


class SamplingConfig(BaseModel):
    """How programs are sampled. temperature 0 means greedy decoding (the CodeRL baseline)."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    n: int = Field(default=1, ge=1)
    """programs per problem"""
    temperature: float = Field(default=0.6, ge=0.0)
    """CodeRL samples at 0.6; 0 is greedy"""
    top_p: float = Field(default=0.95, gt=0.0, le=1.0)
    """nucleus sampling: the smallest set of tokens whose probability reaches top_p"""
    max_new_tokens: int = Field(default=512, ge=1)
    batch_size: int = Field(default=32, ge=1)
    """sequences decoded together (n samples of one problem count n); the static decoder keeps
    this many rows busy"""
    seed: int | None = 0
    """None draws from torch's global generator; an int makes sampling reproducible"""

    @property
    def is_greedy(self) -> bool:
        return self.temperature == 0.0


class SamplerConfig(BaseModel):
    """The sampler actors of a training run."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    num_samplers: int = Field(default=1, ge=1)
    num_gpus: float = Field(default=0.0, ge=0)
    """GPUs per sampler actor (0: CPU); fractions share a GPU"""
    resources: RayResources = Field(default_factory=dict)
    """custom Ray resources per sampler actor, e.g. {sampler_node = 1}: samplers start only on nodes
    started with them (`ray start --resources '{"sampler_node": 4}'`); ignored without Ray"""
    problems_per_round: int = Field(default=8, ge=1)
    """problems a sampler takes per round; each gets sampling.n samples (and a greedy decode when the
    learner's baseline is greedy)"""
    sampling: SamplingConfig = Field(
        default_factory=lambda: SamplingConfig(n=4, temperature=0.8, top_p=0.95, max_new_tokens=160)
    )
    rollout_ttl_s: int = Field(default=86_400, ge=60)
    """how long a rollout waits in Redis for the learner"""


class SyncConfig(BaseModel):
    """How the learner's weights reach the samplers after each update (models/weight_sync.py,
    models/weight_group.py)."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    method: Literal["object_store", "collective"] = "object_store"
    """object_store: the learner packs its weights (one buffer per dtype) into Ray's object store and
    each sampler applies them before its next round; collective: the learner broadcasts them in
    buckets over a process group of its own with the samplers, each receiving into a staging copy
    while it samples (needs use_ray; a restarted sampler gets its weights through the object store
    and the group is rebuilt at the next broadcast)"""
    backend: Literal["auto", "gloo", "nccl"] = "auto"
    """collective: nccl when the learner and the samplers all have GPUs (learner.num_gpus and
    sampler.num_gpus above 0), else gloo (CPU tensors over TCP)"""
    bucket_mb: float = Field(default=64.0, gt=0)
    """collective: megabytes per broadcast bucket; the learner holds two buckets besides its model"""
    timeout_s: float = Field(default=120.0, gt=0)
    """collective: how long joining the group or one broadcast may take before the driver falls back
    to the object store for that broadcast"""
