"""The daemon's configuration: one schema and one loader (``config.loader``) for the daemon, the CLI, the
actors and the tests. The bottom layer: it imports nothing of this project, and everything may import it.
(It is not part of the wire contract in ``messages/``.)"""

from config.loader import (
    ENV_PREFIX, ActorsConfig, AllocationsConfig, ApplyConfig, Auth, Bind, ClusterConfig, Config, ConfigError,
    ControlBusConfig, JwtConfig, ServerConfig, StorageConfig, WorldServiceConfig, load_config,
)

__all__ = [
    "ENV_PREFIX", "ActorsConfig", "AllocationsConfig", "ApplyConfig", "Auth", "Bind", "ClusterConfig", "Config",
    "ConfigError", "ControlBusConfig", "JwtConfig", "ServerConfig", "StorageConfig", "WorldServiceConfig",
    "load_config",
]
