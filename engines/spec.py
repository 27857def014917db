"""What a segmentation model is: architecture, input size and preprocessing."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Architecture = Literal["Unet", "UnetPlusPlus", "FPN", "Linknet", "DeepLabV3Plus"]
Head = Literal["segmentation", "classification"]


class ModelSpec(BaseModel):
    """Everything needed to rebuild a model and to feed it the crops it was trained on.

    A crop is a square RGB image of ``input_size`` pixels around a face box enlarged by
    ``crop_margin`` (see :func:`fakewatch.engines.crop.crop_face`). The network sees
    ``(pixel / 255 - mean) / std`` per channel. A ``segmentation`` head returns one
    channel of logits: the per-pixel log-odds that a pixel was generated rather than
    filmed. A ``classification`` head (the frame-classifier baseline) returns one logit
    per crop, which the deployed graph spreads over the whole mask so that every
    runtime, score and report treats both alike.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    head: Head = Field("segmentation", description="per-pixel mask or one score per crop")
    architecture: Architecture = Field("Unet", description="segmentation-models-pytorch class")
    encoder: str = Field("mobilenet_v2", description="segmentation-models-pytorch encoder name")
    encoder_depth: int = Field(5, ge=3, le=5, description="number of encoder stages")
    same_padding: bool = Field(
        False,
        description="TensorFlow 'SAME' padding in the encoder (timm 'tu-' encoders only), "
        "which weights trained in Keras or TensorFlow expect",
    )
    decoder_channels: tuple[int, ...] = Field(
        (128, 64, 32, 16, 16),
        description="decoder width per stage: one per encoder stage, one fewer with mask_stride 2",
    )
    mask_stride: Literal[1, 2] = Field(
        1,
        description="resolution the decoder stops at: 1 decodes to the full crop; 2 stops at "
        "half resolution (Unet only, without the last full-size decoder stage) and upsamples "
        "the logits bilinearly to the crop size",
    )
    boundary_head: bool = Field(
        False,
        description="a second output channel trained on the blend boundary (Face X-ray); "
        "the deployed graph returns the mask channel only",
    )
    input_size: int = Field(224, ge=64, le=1024, description="crop side in pixels")
    crop_margin: float = Field(1.3, ge=1.0, le=3.0, description="face box enlargement")
    mean: tuple[float, float, float] = Field(
        (0.485, 0.456, 0.406), description="per-channel RGB mean of pixels scaled to 0..1"
    )
    std: tuple[float, float, float] = Field(
        (0.229, 0.224, 0.225), description="per-channel RGB std of pixels scaled to 0..1"
    )

    @field_validator("input_size")
    @classmethod
    def _divisible(cls, value: int) -> int:
        if value % 32:
            raise ValueError(f"input_size must be a multiple of 32 for a 5-stage UNet, got {value}")
        return value

    @field_validator("std")
    @classmethod
    def _positive_std(cls, value: tuple[float, float, float]) -> tuple[float, float, float]:
        if min(value) <= 0:
            raise ValueError(f"std must be positive, got {value}")
        return value

    @model_validator(mode="after")
    def _one_width_per_stage(self) -> ModelSpec:
        if self.same_padding and not self.encoder.startswith("tu-"):
            raise ValueError(
                f"same_padding needs a timm encoder ('tu-...'), got encoder {self.encoder!r}"
            )
        if self.mask_stride != 1 and (self.head != "segmentation" or self.architecture != "Unet"):
            raise ValueError(
                f"mask_stride {self.mask_stride} needs a segmentation Unet, got a "
                f"{self.head} {self.architecture}"
            )
        stages = self.encoder_depth - (self.mask_stride - 1)
        if len(self.decoder_channels) != stages:
            raise ValueError(
                f"decoder_channels has {len(self.decoder_channels)} entries but encoder_depth "
                f"is {self.encoder_depth} with mask_stride {self.mask_stride}; give one width per "
                f"stage: {stages} decoded stages"
            )
        return self
