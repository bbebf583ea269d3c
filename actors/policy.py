"""The policy: a language model, its tokenizer and the version of its weights.

``Policy`` is a plain class; the learner trains ``policy.model`` in place, and Ray sampler actors
(issue 5) wrap one each and swap in broadcast weights with ``load_packed``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from coderl.problem import Problem
from coderl.wire import SampledProgram
from models.loading import load_model, resolve_device
from models.prompts import extract_program, format_prompt
from models.sequences import TokenBatch, pad_left, pad_right
from models.weight_sync import PackedWeights, WeightPacker, load_packed

from .config import PolicyConfig, SamplingConfig
from .sampling import sample_tokens
from .static_cache import static_decode_refusal
from .static_decode import ContinuousDecoder, DecodedRow, DecodeRequest

__all__ = ["POLICY_FILE", "Policy"]

log = logging.getLogger(__name__)

POLICY_FILE = "coderl_policy.json"
"""written beside the Hugging Face files of a checkpoint: the policy version and training state"""

PROMPT_BUCKET = 64
"""prompt columns of a kept decoder come in multiples of this"""
KEPT_DECODERS = 2
"""decoders (and their caches and graphs) a policy on CUDA keeps"""

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


class Policy:
    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        config: PolicyConfig,
        version: int = 0,
    ) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.config = config
        self.version = version
        self.device = next(model.parameters()).device
        self.is_encoder_decoder = bool(model.config.is_encoder_decoder)
        self._packer = WeightPacker()
        self.static_decoder = self._choose_decoder(config.decoder)
        """whether ``sample`` decodes over static caches with rows refilled (else growing caches)"""
        self._decoders: dict[tuple[int, int, int], ContinuousDecoder] = {}
        """on CUDA, decoders kept by shape (slots, prompt width, new tokens): their captured graphs
        replay across calls and weight loads; elsewhere one is built per call"""

    def _choose_decoder(self, decoder: str) -> bool:
        refusal = static_decode_refusal(self.model)
        if decoder == "static" and refusal is not None:
            log.warning("policy.decoder=static on a model it is not tested on: %s", refusal)
        elif decoder == "auto" and refusal is not None:
            log.info("sampling with the dynamic decoder: %s", refusal)
        return decoder == "static" or (decoder == "auto" and refusal is None)

    @classmethod
    def load(cls, config: PolicyConfig) -> Policy:
        """From a preset, a checkpoint directory (keeping its policy version) or a hub name."""
        loaded = load_model(config.model, config.device, _DTYPES[config.dtype], config.seed)
        version = 0
        state_file = Path(config.model) / POLICY_FILE
        if state_file.is_file():
            version = int(json.loads(state_file.read_text())["policy_version"])
        return cls(loaded.model, loaded.tokenizer, config, version)

    def save(self, directory: str | Path, extra: dict[str, object] | None = None) -> Path:
        """A checkpoint that ``from_pretrained`` (and ``Policy.load``) reads, tokenizer included."""
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        self.model.save_pretrained(out)
        self.tokenizer.save_pretrained(out)
        state = {"policy_version": self.version, "source": self.config.model, **(extra or {})}
        (out / POLICY_FILE).write_text(json.dumps(state, indent=2) + "\n")
        return out

    @property
    def eos_id(self) -> int:
        return int(self.tokenizer.eos_token_id)

    @property
    def pad_id(self) -> int:
        return int(self.tokenizer.pad_token_id)

    # -- tokens ---------------------------------------------------------------------------------

    def prompt_token_ids(self, problem: Problem) -> list[int]:
        """The prompt's ids; a long prompt keeps its end, where the format line and marker are."""
        ids = self.tokenizer(format_prompt(problem), add_special_tokens=True)["input_ids"]
        return list(ids[-self.config.max_prompt_tokens :])

    def program_token_ids(self, program: str) -> list[int]:
        """A ground-truth program as a response: its ids then EOS, cut to max_program_tokens."""
        ids = self.tokenizer(program, add_special_tokens=False)["input_ids"]
        return [*ids[: self.config.max_program_tokens - 1], self.eos_id]

    def batch(self, prompts: Sequence[Sequence[int]], responses: Sequence[Sequence[int]]) -> TokenBatch:
        prompt_ids, prompt_mask = pad_left(prompts, self.pad_id)
        response_ids, response_mask = pad_right(responses, self.pad_id)
        return TokenBatch(prompt_ids, prompt_mask, response_ids, response_mask).to(self.device)

    def decode(self, token_ids: Sequence[int]) -> str:
        return str(self.tokenizer.decode(list(token_ids), skip_special_tokens=True))

    # -- sampling -------------------------------------------------------------------------------

    def sample(
        self,
        problems: Sequence[Problem],
        params: SamplingConfig,
        round_id: str = "",
        prefixes: Sequence[Sequence[int]] | None = None,
    ) -> list[SampledProgram]:
        """``params.n`` programs per problem, in problem order, decoded ``params.batch_size`` at a time.

        A call's programs of one problem form one group, ``{task_id}/v{version}{round_id}``; sample
        ids are ``{group_id}/{sample|greedy}{index}``, numbered on across repeats of a problem in
        ``problems``. Give each call at the same policy version its own ``round_id`` when ids must
        stay unique; a greedy call with the same ``round_id`` joins the sampled call's groups (its
        decode is their baseline). ``prefixes[i]``: response token ids every program of
        ``problems[i]`` starts with (critical sampling's seeds); the program continues from there.
        """
        if prefixes is not None and len(prefixes) != len(problems):
            raise ValueError(f"{len(prefixes)} prefixes for {len(problems)} problems")
        seen: dict[str, int] = {}
        jobs: list[tuple[Problem, int, list[int]]] = []
        for entry, problem in enumerate(problems):
            first = seen.get(problem.task_id, 0)
            seen[problem.task_id] = first + params.n
            prefix = list(prefixes[entry]) if prefixes is not None else []
            jobs += [(problem, first + index, prefix) for index in range(params.n)]
        generator = None
        if params.seed is not None:
            generator = torch.Generator(device=self.device).manual_seed(params.seed)
        was_training = self.model.training
        self.model.eval()
        out: list[SampledProgram] = []
        try:
            if self.static_decoder and jobs:
                return self._sample_continuous(jobs, params, generator, round_id)
            for start in range(0, len(jobs), params.batch_size):
                chunk = jobs[start : start + params.batch_size]
                out.extend(self._sample_chunk(chunk, params, generator, round_id))
        finally:
            self.model.train(was_training)
        return out

    def _sample_continuous(
        self,
        jobs: Sequence[tuple[Problem, int, list[int]]],
        params: SamplingConfig,
        generator: torch.Generator | None,
        round_id: str,
    ) -> list[SampledProgram]:
        """Every job through one ``ContinuousDecoder``: ``params.batch_size`` rows busy, each
        refilled with the next job as it ends; programs come back in job order."""
        prompts = [self.prompt_token_ids(problem) for problem, _, _ in jobs]
        requests = [
            DecodeRequest(prompt, prefix, meta=index)
            for index, (prompt, (_, _, prefix)) in enumerate(zip(prompts, jobs, strict=True))
        ]
        decoder = self._decoder(params, min(params.batch_size, len(jobs)), max(map(len, prompts)))
        rows: list[DecodedRow | None] = [None] * len(jobs)
        for row in decoder.decode(requests, params, generator):
            rows[row.request.meta] = row
        out = []
        for (problem, index, _), prompt, row in zip(jobs, prompts, rows, strict=True):
            assert row is not None
            out.append(self._program(problem, index, prompt, row, params, round_id))
        return out

    def _decoder(self, params: SamplingConfig, slots: int, prompt_width: int) -> ContinuousDecoder:
        if self.device.type != "cuda":
            return ContinuousDecoder(self.model, params, self.eos_id, self.pad_id, slots, prompt_width)
        # prompt widths round up to a bucket, so rounds of similar prompts share one graph
        bucket = min(self.config.max_prompt_tokens, -(-prompt_width // PROMPT_BUCKET) * PROMPT_BUCKET)
        key = (slots, max(bucket, prompt_width), params.max_new_tokens)
        if key not in self._decoders:
            while len(self._decoders) >= KEPT_DECODERS:  # each holds its caches: drop the oldest
                del self._decoders[next(iter(self._decoders))]
            self._decoders[key] = ContinuousDecoder(self.model, params, self.eos_id, self.pad_id, *key[:2])
        return self._decoders[key]

    def _sample_chunk(
        self,
        jobs: Sequence[tuple[Problem, int, list[int]]],
        params: SamplingConfig,
        generator: torch.Generator | None,
        round_id: str,
    ) -> list[SampledProgram]:
        prompts = [self.prompt_token_ids(problem) for problem, _, _ in jobs]
        prompt_ids, prompt_mask = pad_left(prompts, self.pad_id)
        forced = None
        if any(prefix for _, _, prefix in jobs):
            prefix_ids, prefix_mask = pad_right([prefix for _, _, prefix in jobs], self.pad_id)
            forced = (prefix_ids.to(self.device), prefix_mask.sum(dim=1).to(self.device))
        samples = sample_tokens(
            self.model,
            prompt_ids.to(self.device),
            prompt_mask.to(self.device),
            params,
            eos_id=self.eos_id,
            pad_id=self.pad_id,
            generator=generator,
            prefixes=forced,
        )
        out = []
        for row, ((problem, index, _), prompt) in enumerate(zip(jobs, prompts, strict=True)):
            length = int(samples.mask[row].sum())
            decoded = DecodedRow(
                request=DecodeRequest(prompt),
                token_ids=samples.token_ids[row, :length].tolist(),
                logprobs=samples.logprobs[row, :length].tolist(),
                sampling_logprobs=samples.sampling_logprobs[row, :length].tolist(),
                finished=bool(samples.finished[row]),
            )
            out.append(self._program(problem, index, prompt, decoded, params, round_id))
        return out

    def _program(
        self,
        problem: Problem,
        index: int,
        prompt: list[int],
        row: DecodedRow,
        params: SamplingConfig,
        round_id: str,
    ) -> SampledProgram:
        group_id = f"{problem.task_id}/v{self.version}{round_id}"
        kind = "greedy" if params.is_greedy else "sample"
        return SampledProgram(
            sample_id=f"{group_id}/{kind}{index}",
            task_id=problem.task_id,
            group_id=group_id,
            policy_version=self.version,
            program=extract_program(self.decode(row.token_ids)),
            prompt_token_ids=prompt,
            token_ids=row.token_ids,
            logprobs=row.logprobs,
            sampling_logprobs=row.sampling_logprobs,
            finished=row.finished,
            is_greedy=params.is_greedy,
        )

    # -- weights --------------------------------------------------------------------------------

    def cpu_weights(self) -> dict[str, torch.Tensor]:
        """A detached CPU copy of the model's state dict (tests, comparisons; a broadcast sends
        ``packed_weights``)."""
        return {k: v.detach().to("cpu", copy=True) for k, v in self.model.state_dict().items()}

    def load_weights(self, state_dict: dict[str, torch.Tensor], version: int) -> None:
        """Swap in a state dict (between sampling batches) and adopt its version."""
        self.model.load_state_dict(state_dict)
        self.version = version

    def packed_weights(self) -> PackedWeights:
        """The weights as a broadcast sends them (one buffer per dtype), with their version."""
        return self._packer.pack(self.model, self.version)

    def load_packed(self, packed: PackedWeights) -> None:
        """Swap in broadcast weights (between sampling batches) and adopt their version."""
        load_packed(self.model, packed)
        self.version = packed.version

    def to(self, device: str) -> Policy:
        self.device = resolve_device(device)
        self.model.to(self.device)
        self._decoders.clear()  # their caches and graphs live on the old device
        return self
