from loupe_images.app import build
from loupe_images.settings import ImagesSettings
from loupe_shared.kit.app import serve
from loupe_shared.kit.logging import configure_logging

settings = ImagesSettings()
configure_logging("images", settings.log_level)
serve(build(settings), settings)
