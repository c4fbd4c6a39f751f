from loupe_backup.app import build
from loupe_backup.settings import BackupSettings
from loupe_shared.kit.app import serve
from loupe_shared.kit.logging import configure_logging

settings = BackupSettings()
configure_logging("backup", settings.log_level)
serve(build(settings), settings)
