from loupe_inspect.app import build
from loupe_inspect.settings import InspectSettings
from loupe_shared.kit.app import serve
from loupe_shared.kit.logging import configure_logging

settings = InspectSettings()
configure_logging("inspect", settings.log_level)
serve(build(settings), settings)
