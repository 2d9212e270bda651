import HeraldCore; import AsyncHTTPClient
