"""A diffusers flow-matching pipeline seen as a velocity field: prompt encoding, noise, the
velocity ``v(x_t, t | c)`` under any set of trainable weights, deterministic Euler sampling and
decoding. One small class per transformer family:

- ``FluxFlow``: ``FluxPipeline`` (FLUX.1, the shapes world) and ``FluxKontextPipeline`` (editing:
  the source image's latents ride along as extra tokens);
- ``SD3Flow``: ``StableDiffusion3Pipeline``;
- ``QwenImageFlow``: ``QwenImagePipeline``;
- ``QwenImageEditFlow``: ``QwenImageEditPipeline`` (editing: the source image rides along as
  vision tokens of the text encoder and as packed latents after the noisy ones).

Convention (diffusers flow matching): ``x_t = (1 - t) x0 + t eps``, ``v = eps - x0``, so
``x0 = x_t - t v``. ``params`` (a name -> tensor dict of the trainable weights) stands in for the
live weights for one call through ``torch.func.functional_call``: that is how the old policy, the
EMA and the base model are evaluated without copies of the whole transformer.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image

from models.errors import ConfigError
from models.types import Task

TEXT_ENCODERS = ("text_encoder", "text_encoder_2", "text_encoder_3")  # the pipelines' attribute names

Params = dict[str, torch.Tensor]


@dataclass
class Cond:
    """Conditioning of a batch: ``batched`` tensors have the batch on dim 0, ``shared`` ones
    (position ids) are the same for every item."""

    batched: dict[str, torch.Tensor]
    shared: dict[str, torch.Tensor]

    def __len__(self) -> int:
        return next(iter(self.batched.values())).shape[0]

    def repeat(self, k: int) -> "Cond":
        """Each item ``k`` times in a row (a group of ``k`` images per prompt)."""
        return Cond({n: t.repeat_interleave(k, dim=0) for n, t in self.batched.items()}, self.shared)

    def select(self, index: torch.Tensor | list[int]) -> "Cond":
        """The items at ``index``."""
        index = torch.as_tensor(index, dtype=torch.long)
        return Cond({n: t[index.to(t.device)] for n, t in self.batched.items()}, self.shared)

    @staticmethod
    def cat(conds: list["Cond"]) -> "Cond":
        """Concatenate batches that share their position ids; text of different lengths (a
        family that pads each batch to its longest prompt) is zero-padded to the longest."""
        batched = {}
        for name in conds[0].batched:
            parts = [c.batched[name] for c in conds]
            if parts[0].ndim >= 2:
                longest = max(p.shape[1] for p in parts)
                parts = [torch.nn.functional.pad(p, (0, 0) * (p.ndim - 2) + (0, longest - p.shape[1])) for p in parts]
            batched[name] = torch.cat(parts)
        return Cond(batched, conds[0].shared)


class FlowModel:
    """Base: sampling and the trainable-weights plumbing; families fill in encode/noise/velocity/decode.

    :param pipe: a loaded diffusers pipeline (on ``device``; with ``offload_text_encoders`` its
        text encoders wait on the CPU and visit the transformer's device only to encode).
    :param size: (width, height) in pixels; ``guidance``: CFG scale (true CFG with
        ``negative_prompt`` when the model has no guidance embedding and ``guidance > 1``).
    """

    task: Task = "t2i"

    def __init__(self, pipe: Any, *, size: tuple[int, int], guidance: float, max_sequence_length: int | None,
                 negative_prompt: str = "", offload_text_encoders: bool = False) -> None:
        self.pipe = pipe
        self.offload_text_encoders = offload_text_encoders
        for encoder in self.text_encoders() if offload_text_encoders else []:
            encoder.to("cpu")
        self.transformer = pipe.transformer
        self.device = self.transformer.device
        self.dtype = self.transformer.dtype
        self.width, self.height = size
        self.guidance = float(guidance)
        self.max_sequence_length = max_sequence_length
        self.negative_prompt = negative_prompt

    # -- family hooks -----------------------------------------------------------------------------

    def _encode(self, prompts: list[str], sources: list[Image.Image] | None) -> Cond:
        raise NotImplementedError

    def noise(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """``n`` starting noises drawn on the CPU from ``generator`` (the same on every device)."""
        raise NotImplementedError

    def _forward(self, x: torch.Tensor, t: torch.Tensor, cond: Cond, params: Params | None) -> torch.Tensor:
        raise NotImplementedError

    def decode(self, latents: torch.Tensor) -> list[Image.Image]:
        """Images of clean latents."""
        raise NotImplementedError

    def _shift_mu(self) -> float | None:
        return None

    # -- shared -----------------------------------------------------------------------------------

    def encode(self, prompts: list[str], sources: list[Image.Image] | None = None) -> Cond:
        """Conditioning for ``prompts`` (and, for editing, their ``sources``), on the device; with
        ``offload_text_encoders`` the text encoders visit the device for this call only."""
        encoders = self.text_encoders() if self.offload_text_encoders else []
        for encoder in encoders:
            encoder.to(self.device)
        try:
            return self._encode(prompts, sources)
        finally:
            for encoder in encoders:
                encoder.to("cpu")

    def text_encoders(self) -> list[torch.nn.Module]:
        """The pipeline's text encoders (one to three, by family)."""
        return [m for name in TEXT_ENCODERS if (m := getattr(self.pipe, name, None)) is not None]

    @property
    def uses_cfg(self) -> bool:
        """Whether sampling runs a second, unconditional pass (true classifier-free guidance)."""
        return self.guidance > 1 and not self._guidance_embedded()

    def _guidance_embedded(self) -> bool:
        return bool(getattr(self.transformer.config, "guidance_embeds", False))

    def velocity(self, x: torch.Tensor, t: torch.Tensor, cond: Cond, params: Params | None = None) -> torch.Tensor:
        """``v(x_t, t | cond)`` with the transformer's live weights, or ``params`` swapped in."""
        t = t.to(self.device, dtype=self.dtype).expand(x.shape[0])
        return self._forward(x.to(self.device, self.dtype), t, cond, params).float()

    def _call(self, params: Params | None, **kwargs: Any) -> torch.Tensor:
        if params is None:
            return self.transformer(**kwargs, return_dict=False)[0]
        return torch.func.functional_call(self.transformer, params, args=(), kwargs={**kwargs, "return_dict": False},
                                          strict=False)[0]

    def sigmas(self, steps: int) -> torch.Tensor:
        """The ``steps + 1`` noise levels of the pipeline's own scheduler (shift included), ending at 0."""
        scheduler = copy.deepcopy(self.pipe.scheduler)
        sigmas = np.linspace(1.0, 1.0 / steps, steps)
        mu = self._shift_mu() if scheduler.config.get("use_dynamic_shifting", False) else None
        scheduler.set_timesteps(sigmas=sigmas, mu=mu, device="cpu")
        return scheduler.sigmas.float()

    @torch.no_grad()
    def sample(self, cond: Cond, noise: torch.Tensor, steps: int, params: Params | None = None,
               uncond: Cond | None = None) -> torch.Tensor:
        """Deterministic Euler integration from ``noise`` to clean latents (CFG when ``uncond``)."""
        x = noise.to(self.device, torch.float32)
        sigmas = self.sigmas(steps)
        for s, s_next in zip(sigmas[:-1], sigmas[1:]):
            t = s.reshape(1)
            v = self.velocity(x, t, cond, params)
            if uncond is not None:
                v = self.guide(v, self.velocity(x, t, uncond, params))
            x = x + (float(s_next) - float(s)) * v
        return x

    def guide(self, v_cond: torch.Tensor, v_uncond: torch.Tensor) -> torch.Tensor:
        """Classifier-free guidance of the conditional velocity by the unconditional one."""
        return v_uncond + self.guidance * (v_cond - v_uncond)

    def _vae_decode(self, latents: torch.Tensor) -> list[Image.Image]:
        vae = self.pipe.vae
        latents = latents.to(vae.dtype) / vae.config.scaling_factor + (vae.config.shift_factor or 0.0)
        with torch.no_grad():
            images = vae.decode(latents, return_dict=False)[0]
        return self.pipe.image_processor.postprocess(images, output_type="pil")


class FluxFlow(FlowModel):
    """FLUX.1 text-to-image and FLUX.1-Kontext editing (packed 2x2 latents, rotary position ids)."""

    def __init__(self, pipe: Any, **kw: Any) -> None:
        super().__init__(pipe, **kw)
        self.task = "edit" if type(pipe).__name__ == "FluxKontextPipeline" else "t2i"
        self.channels = self.transformer.config.in_channels // 4
        factor = pipe.vae_scale_factor * 2
        self.lat_h, self.lat_w = 2 * (self.height // factor), 2 * (self.width // factor)
        if self.lat_h < 2 or self.lat_w < 2:
            raise ConfigError(f"{self.width}x{self.height} is too small for this model (multiples of {factor}).")
        self.latent_ids = pipe._prepare_latent_image_ids(1, self.lat_h // 2, self.lat_w // 2, self.device, self.dtype)

    def _encode(self, prompts: list[str], sources: list[Image.Image] | None) -> Cond:
        kw = {} if self.max_sequence_length is None else {"max_sequence_length": self.max_sequence_length}
        with torch.no_grad():
            embeds, pooled, text_ids = self.pipe.encode_prompt(prompt=prompts, prompt_2=None, device=self.device, **kw)
        batched = {"encoder_hidden_states": embeds, "pooled_projections": pooled}
        shared = {"txt_ids": text_ids, "img_ids": self.latent_ids}
        if self.task == "edit":
            if sources is None or len(sources) != len(prompts):
                raise ConfigError("An editing model needs one source image per prompt.")
            batched["image_latents"], image_ids = self._source_latents(sources)
            shared["img_ids"] = torch.cat([self.latent_ids, image_ids], dim=0)
        return Cond(batched, shared)

    def _source_latents(self, sources: list[Image.Image]) -> tuple[torch.Tensor, torch.Tensor]:
        pixels = self.pipe.image_processor.preprocess(sources, self.height, self.width).to(self.device, self.dtype)
        with torch.no_grad():
            latents = self.pipe._encode_vae_image(pixels, generator=None)
        n, c, h, w = latents.shape
        packed = self.pipe._pack_latents(latents, n, c, h, w)
        ids = self.pipe._prepare_latent_image_ids(1, h // 2, w // 2, self.device, self.dtype)
        ids[..., 0] = 1
        return packed, ids

    def noise(self, n: int, generator: torch.Generator) -> torch.Tensor:
        raw = torch.randn((n, self.channels, self.lat_h, self.lat_w), generator=generator)
        return self.pipe._pack_latents(raw, n, self.channels, self.lat_h, self.lat_w)

    def _forward(self, x: torch.Tensor, t: torch.Tensor, cond: Cond, params: Params | None) -> torch.Tensor:
        hidden = x
        if "image_latents" in cond.batched:
            hidden = torch.cat([x, cond.batched["image_latents"]], dim=1)
        guidance = None
        if self._guidance_embedded():
            guidance = torch.full((x.shape[0],), self.guidance, device=self.device, dtype=torch.float32)
        out = self._call(
            params, hidden_states=hidden, timestep=t, guidance=guidance,
            pooled_projections=cond.batched["pooled_projections"],
            encoder_hidden_states=cond.batched["encoder_hidden_states"],
            txt_ids=cond.shared["txt_ids"], img_ids=cond.shared["img_ids"],
        )
        return out[:, : x.shape[1]]

    def _shift_mu(self) -> float | None:
        from diffusers.pipelines.flux.pipeline_flux import calculate_shift

        c = self.pipe.scheduler.config
        return calculate_shift((self.lat_h // 2) * (self.lat_w // 2), c.get("base_image_seq_len", 256),
                               c.get("max_image_seq_len", 4096), c.get("base_shift", 0.5), c.get("max_shift", 1.15))

    def decode(self, latents: torch.Tensor) -> list[Image.Image]:
        unpacked = self.pipe._unpack_latents(latents, self.height, self.width, self.pipe.vae_scale_factor)
        return self._vae_decode(unpacked)


class SD3Flow(FlowModel):
    """Stable Diffusion 3 / 3.5 text-to-image (MMDiT over unpacked latents)."""

    def __init__(self, pipe: Any, **kw: Any) -> None:
        super().__init__(pipe, **kw)
        factor = pipe.vae_scale_factor * self.transformer.config.patch_size
        self.lat_h = self.height // factor * self.transformer.config.patch_size
        self.lat_w = self.width // factor * self.transformer.config.patch_size
        if self.lat_h < 1 or self.lat_w < 1:
            raise ConfigError(f"{self.width}x{self.height} is too small for this model (multiples of {factor}).")
        self.channels = self.transformer.config.in_channels

    def _encode(self, prompts: list[str], sources: list[Image.Image] | None) -> Cond:
        kw = {} if self.max_sequence_length is None else {"max_sequence_length": self.max_sequence_length}
        with torch.no_grad():
            embeds, _, pooled, _ = self.pipe.encode_prompt(
                prompt=prompts, prompt_2=None, prompt_3=None, device=self.device,
                do_classifier_free_guidance=False, **kw)
        return Cond({"encoder_hidden_states": embeds, "pooled_projections": pooled}, {})

    def noise(self, n: int, generator: torch.Generator) -> torch.Tensor:
        return torch.randn((n, self.channels, self.lat_h, self.lat_w), generator=generator)

    def _guidance_embedded(self) -> bool:
        return False

    def _forward(self, x: torch.Tensor, t: torch.Tensor, cond: Cond, params: Params | None) -> torch.Tensor:
        return self._call(
            params, hidden_states=x, timestep=t * 1000, encoder_hidden_states=cond.batched["encoder_hidden_states"],
            pooled_projections=cond.batched["pooled_projections"],
        )

    def _shift_mu(self) -> float | None:
        from diffusers.pipelines.stable_diffusion_3.pipeline_stable_diffusion_3 import calculate_shift

        c = self.pipe.scheduler.config
        patch = self.transformer.config.patch_size
        return calculate_shift((self.lat_h // patch) * (self.lat_w // patch), c.get("base_image_seq_len", 256),
                               c.get("max_image_seq_len", 4096), c.get("base_shift", 0.5), c.get("max_shift", 1.16))

    def decode(self, latents: torch.Tensor) -> list[Image.Image]:
        return self._vae_decode(latents)


class QwenImageFlow(FlowModel):
    """Qwen-Image text-to-image (packed latents of a 3-D VAE, a Qwen2.5-VL text encoder whose
    batches are padded to the longest prompt with a mask, norm-preserving true CFG)."""

    def __init__(self, pipe: Any, **kw: Any) -> None:
        super().__init__(pipe, **kw)
        factor = pipe.vae_scale_factor * 2
        self.lat_h, self.lat_w = 2 * (self.height // factor), 2 * (self.width // factor)
        if self.lat_h < 2 or self.lat_w < 2:
            raise ConfigError(f"{self.width}x{self.height} is too small for this model (multiples of {factor}).")
        self.channels = self.transformer.config.in_channels // 4

    def _encode(self, prompts: list[str], sources: list[Image.Image] | None) -> Cond:
        return Cond(self._text(prompts), {})

    def _text(self, prompts: list[str], **extra: Any) -> dict[str, torch.Tensor]:
        """The prompts' embeddings and mask (``extra``: more ``encode_prompt`` arguments)."""
        kw = {} if self.max_sequence_length is None else {"max_sequence_length": self.max_sequence_length}
        with torch.no_grad():
            embeds, mask = self.pipe.encode_prompt(prompt=prompts, device=self.device, **kw, **extra)
        if mask is None:
            mask = torch.ones(embeds.shape[:2], dtype=torch.long, device=self.device)
        return {"encoder_hidden_states": embeds, "encoder_hidden_states_mask": mask}

    def noise(self, n: int, generator: torch.Generator) -> torch.Tensor:
        raw = torch.randn((n, 1, self.channels, self.lat_h, self.lat_w), generator=generator)
        return self.pipe._pack_latents(raw, n, self.channels, self.lat_h, self.lat_w)

    def _guidance_embedded(self) -> bool:
        return False

    def _hidden(self, x: torch.Tensor, cond: Cond) -> torch.Tensor:
        return x

    def _img_shapes(self) -> list[tuple[int, int, int]]:
        return [(1, self.lat_h // 2, self.lat_w // 2)]

    def _forward(self, x: torch.Tensor, t: torch.Tensor, cond: Cond, params: Params | None) -> torch.Tensor:
        out = self._call(
            params, hidden_states=self._hidden(x, cond), timestep=t,
            encoder_hidden_states=cond.batched["encoder_hidden_states"],
            encoder_hidden_states_mask=cond.batched["encoder_hidden_states_mask"],
            img_shapes=[self._img_shapes()] * x.shape[0],
        )
        return out[:, : x.shape[1]]

    def guide(self, v_cond: torch.Tensor, v_uncond: torch.Tensor) -> torch.Tensor:
        guided = super().guide(v_cond, v_uncond)
        return guided * (v_cond.norm(dim=-1, keepdim=True) / guided.norm(dim=-1, keepdim=True))

    def _shift_mu(self) -> float | None:
        from diffusers.pipelines.qwenimage.pipeline_qwenimage import calculate_shift

        c = self.pipe.scheduler.config
        return calculate_shift((self.lat_h // 2) * (self.lat_w // 2), c.get("base_image_seq_len", 256),
                               c.get("max_image_seq_len", 4096), c.get("base_shift", 0.5), c.get("max_shift", 1.15))

    def decode(self, latents: torch.Tensor) -> list[Image.Image]:
        vae = self.pipe.vae
        unpacked = self.pipe._unpack_latents(latents, self.height, self.width, self.pipe.vae_scale_factor).to(vae.dtype)
        shape = (1, vae.config.z_dim, 1, 1, 1)
        mean = torch.tensor(vae.config.latents_mean).view(shape).to(unpacked)
        std = torch.tensor(vae.config.latents_std).view(shape).to(unpacked)
        with torch.no_grad():
            images = vae.decode(unpacked * std + mean, return_dict=False)[0][:, :, 0]
        return self.pipe.image_processor.postprocess(images, output_type="pil")


class QwenImageEditFlow(QwenImageFlow):
    """Qwen-Image-Edit, as ``QwenImageEditPipeline`` conditions on its source image: the prompt is
    encoded *with* the source (its vision tokens in the Qwen2.5-VL text encoder, the pipeline's edit
    template; the negative prompt too), and the source's normalised VAE latents, packed, ride after
    the noisy latents with their own ``img_shapes`` entry; the velocity is the first part of the
    output. The pipeline resizes the source to about one megapixel (``source_area``, sides in
    multiples of 32) at the source's aspect ratio; here the output frame's ratio, so a batch shares
    one shape (the same thing when the edit keeps the source's frame, as the studio asks)."""

    task: Task = "edit"

    def __init__(self, pipe: Any, *, source_area: int = 1024 * 1024, **kw: Any) -> None:
        from diffusers.pipelines.qwenimage.pipeline_qwenimage_edit import calculate_dimensions

        super().__init__(pipe, **kw)
        self.source_w, self.source_h, _ = calculate_dimensions(source_area, self.width / self.height)
        if self.source_w < 32 or self.source_h < 32:
            raise ConfigError(f"source_area {source_area} is too small (a source side must be 32 pixels or more).")

    def _encode(self, prompts: list[str], sources: list[Image.Image] | None) -> Cond:
        if sources is None or len(sources) != len(prompts):
            raise ConfigError("An editing model needs one source image per prompt.")
        processor = self.pipe.image_processor
        resized = [processor.resize(s.convert("RGB"), self.source_h, self.source_w) for s in sources]
        batched = self._text(prompts, image=resized)
        pixels = processor.preprocess(resized, self.source_h, self.source_w).unsqueeze(2)
        with torch.no_grad():
            latents = self.pipe._encode_vae_image(pixels.to(self.device, self.dtype), generator=None)
        n, c, _, h, w = latents.shape
        batched["image_latents"] = self.pipe._pack_latents(latents, n, c, h, w)
        return Cond(batched, {})

    def _hidden(self, x: torch.Tensor, cond: Cond) -> torch.Tensor:
        return torch.cat([x, cond.batched["image_latents"]], dim=1)

    def _img_shapes(self) -> list[tuple[int, int, int]]:
        factor = self.pipe.vae_scale_factor * 2
        return [*super()._img_shapes(), (1, self.source_h // factor, self.source_w // factor)]


FAMILIES: dict[str, type[FlowModel]] = {
    "FluxPipeline": FluxFlow,
    "FluxKontextPipeline": FluxFlow,
    "StableDiffusion3Pipeline": SD3Flow,
    "QwenImagePipeline": QwenImageFlow,
    "QwenImageEditPipeline": QwenImageEditFlow,
}


def flow_model(pipe: Any, **kw: Any) -> FlowModel:
    """The ``FlowModel`` of a loaded pipeline. Raises ``ConfigError`` for a pipeline the trainer
    cannot drive (it needs a flow-matching transformer: FLUX.1, FLUX.1-Kontext, SD3, Qwen-Image, Qwen-Image-Edit)."""
    name = type(pipe).__name__
    if name not in FAMILIES:
        raise ConfigError(f"RL training drives {', '.join(sorted(FAMILIES))}; {name} is not one of them.")
    return FAMILIES[name](pipe, **kw)
