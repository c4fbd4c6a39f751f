"""The program config as the pipeline reads it: the shared contract
(`loupe_shared.contracts.program_config`, schema v3), with unknown fields ignored at every
level, so a catalog that gained a field does not stop the workers."""

from typing import Any, Self

from pydantic import ConfigDict
from pydantic.config import ExtraValues

from loupe_shared.contracts.program_config import (
    Alignment,
    AnyTool,
    BrightnessTool,
    DifferenceTool,
    PresenceTool,
    ProgramConfig,
)

__all__ = ["Alignment", "BrightnessTool", "DifferenceTool", "InspectionConfig", "PresenceTool"]


class InspectionConfig(ProgramConfig):
    model_config = ConfigDict(extra="ignore")

    @classmethod
    def model_validate(
        cls,
        obj: Any,
        *,
        strict: bool | None = None,
        extra: ExtraValues | None = "ignore",
        from_attributes: bool | None = None,
        context: Any | None = None,
        by_alias: bool | None = None,
        by_name: bool | None = None,
    ) -> Self:
        """As the contract's, but ignoring unknown fields in the nested models too (their own
        setting is the catalog's `forbid`)."""
        return super().model_validate(
            obj,
            strict=strict,
            extra=extra,
            from_attributes=from_attributes,
            context=context,
            by_alias=by_alias,
            by_name=by_name,
        )

    @property
    def enabled_tools(self) -> list[AnyTool]:
        return [tool for tool in self.tools if tool.enabled]
