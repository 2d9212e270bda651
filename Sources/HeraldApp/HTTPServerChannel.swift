import Hummingbird
import HummingbirdCore
import Logging
import NIOCore
import NIOHTTP1
import NIOHTTPTypes
import NIOHTTPTypesHTTP1

/// Hummingbird's HTTP/1 connection (`HTTP1Channel`) with Herald's own handlers placed between
/// SwiftNIO's HTTP/1 parser and Hummingbird's HTTPTypes codec instead of after the codec.
///
/// ``ConnectionGuard`` and ``WebhookChannel`` read SwiftNIO's request parts as the parser
/// makes them. A webhook served on the event loop then never becomes an `HTTPRequest`: the
/// codec's conversion (the path parsed by `URLComponents`, every header copied into
/// `HTTPFields`, cookies split) cost about 3 µs of CPU per webhook of the 90 it took
/// (perf under wrk), for fields nothing reads. Requests for the router pass through the
/// codec as before, and the connection is otherwise set up as `HTTP1Channel` does: the same
/// parser limits, Hummingbird's connection state handler, and an async channel for the router.
struct HTTPServerChannel: ServerChildChannel, HTTPChannelHandler {
    typealias Value = NIOAsyncChannel<HTTPRequestPart, HTTPResponsePart>

    let responder: HTTPChannelHandler.Responder
    /// Made once per connection: Herald's handlers, in pipeline order.
    let handlers: @Sendable () -> [any RemovableChannelHandler]

    /// A server builder for `Application` that makes connections of this kind.
    static func builder(handlers: @escaping @Sendable () -> [any RemovableChannelHandler]) -> HTTPServerBuilder {
        HTTPServerBuilder { responder in HTTPServerChannel(responder: responder, handlers: handlers) }
    }

    func setup(channel: any Channel, logger: Logger) -> EventLoopFuture<Value> {
        channel.eventLoop.makeCompletedFuture {
            // HTTP1Channel's default limits.
            var limits = NIOHTTPDecoderLimitConfiguration()
            limits.maxHeaderFieldSize = 80 * 1024
            limits.maxHeaderListSize = 80 * 1024
            limits.maxHeaderFieldCount = 1000
            let pipeline = channel.pipeline.syncOperations
            try pipeline.configureHTTPServerPipeline(
                withPipeliningAssistance: false,  // the async channel and WebhookChannel order answers
                withErrorHandling: false,  // ConnectionGuard and Hummingbird answer errors
                withOutboundHeaderValidation: false,  // HTTPTypes validated the router's fields
                withEncoderConfiguration: .init(),
                withDecoderLimitConfiguration: limits)
            try pipeline.addHandlers(handlers())
            try pipeline.addHandler(HTTP1ToHTTPServerCodec(secure: false))
            try pipeline.addHandler(HTTPConnectionStateHandler(idleTimeout: nil, logger: logger))
            return try NIOAsyncChannel(wrappingChannelSynchronously: channel,
                                       configuration: .init(isOutboundHalfClosureEnabled: true))
        }
    }

    func handle(value asyncChannel: Value, logger: Logger) async {
        await handleHTTP(asyncChannel: asyncChannel, logger: logger)
    }
}
