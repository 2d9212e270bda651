// Herald's own code and plugins built before HeraldPlugin existed keep seeing the plugin types
// through `import HeraldCore`; new plugins import HeraldPlugin alone.
@_exported import HeraldPlugin
