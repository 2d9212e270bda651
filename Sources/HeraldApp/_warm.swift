import HeraldCore; import Hummingbird; import ArgumentParser; import AsyncHTTPClient; import Prometheus
