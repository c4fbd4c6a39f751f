"""The export document's shape, for the OpenAPI document: the frontend's own JSON backup
format. The programs, results and logs are the frontend's records, passed through as they are
(the legacy migration reads the programs in either shape the frontend wrote)."""

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class ExportMetadata(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    source: str
    app_version: str = Field(alias="appVersion")
    program_count: int = Field(alias="programCount")
    image_count: int = Field(alias="imageCount")
    result_count: int = Field(alias="resultCount")
    log_count: int = Field(alias="logCount")
    total_size: int = Field(alias="totalSize")


class ExportData(BaseModel):
    programs: list[dict[str, Any]]
    images: dict[str, str] = Field(
        description="each program's master image as a base64 data URL, keyed by program id"
    )
    results: list[dict[str, Any]]
    logs: list[dict[str, Any]]


class ExportDocument(BaseModel):
    version: str
    timestamp: str
    metadata: ExportMetadata
    data: ExportData
