// `herald-floor --nio`: the same receiver as main.swift's, served by one SwiftNIO channel
// handler on the event loop that read the request: no router, no async body stream, no task
// per connection, no hop to Swift's thread pool and back. What the HTTP work costs below
// Hummingbird's layers, for comparison with the Hummingbird floor in the same run.
import NIOCore
import NIOHTTP1
import NIOPosix

/// Answers POST /hooks/jicoo (verify, optionally append, 202) and GET /healthz; 404 otherwise.
final class NIOFloorHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    static let maxBody = 1 << 20
    private let receiver: Receiver
    private var head: HTTPRequestHead?
    private var body = ByteBuffer()
    private var tooLarge = false

    init(receiver: Receiver) { self.receiver = receiver }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let request):
            head = request
            body.clear()
            tooLarge = false
        case .body(var part):
            if body.readableBytes + part.readableBytes > Self.maxBody {
                tooLarge = true
            } else if body.readableBytes == 0 {
                body = part
            } else {
                body.writeBuffer(&part)
            }
        case .end:
            guard let request = head else { return }
            head = nil
            let status: HTTPResponseStatus
            if request.method == .POST, request.uri == "/hooks/jicoo" {
                if tooLarge {
                    status = .payloadTooLarge
                } else if let header = request.headers.first(name: "Jicoo-Webhook-Signature"),
                          receiver.verify(header, body: body) {
                    status = receiver.append(body) ? .accepted : .serviceUnavailable
                } else {
                    status = .unauthorized
                }
            } else if request.method == .GET, request.uri == "/healthz" {
                status = .ok
            } else {
                status = .notFound
            }
            respond(context, request, status)
        }
    }

    private func respond(_ context: ChannelHandlerContext, _ request: HTTPRequestHead, _ status: HTTPResponseStatus) {
        let text = status == .accepted ? "{\"ok\":true}\n" : ""
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: "application/json")
        headers.add(name: "Content-Length", value: String(text.utf8.count))
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: request.version, status: status, headers: headers))),
                      promise: nil)
        if !text.isEmpty {
            context.write(wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(string: text)))), promise: nil)
        }
        context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
    }
}

/// Serves `receiver` on 127.0.0.1:`port` until the process is stopped.
func runNIOFloor(port: Int, receiver: Receiver) throws -> Never {
    let channel = try ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
        .serverChannelOption(.backlog, value: 256)
        .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
        .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
        .childChannelInitializer { channel in
            channel.eventLoop.makeCompletedFuture {
                try channel.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: true)
                try channel.pipeline.syncOperations.addHandler(NIOFloorHandler(receiver: receiver))
            }
        }
        .bind(host: "127.0.0.1", port: port)
        .wait()
    try channel.closeFuture.wait()
    exit(0)
}
