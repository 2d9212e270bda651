import HeraldCore; import NIOSSL; import NIOPosix
