import AsyncHTTPClient
import HeraldPlugin
import NIOCore
import ServiceLifecycle
import Synchronization

/// The HTTP client every chat notifier in a Herald process shares.
///
/// Plugins get it with `context.shared.get(SharedHTTPClient.self) { SharedHTTPClient() }`, so
/// all of them use one connection pool on NIO's shared event loop group. The AsyncHTTPClient
/// client is created on the first delivery, not when the plugin is created, so validating a
/// configuration never opens a pool that would need shutting down.
///
/// AsyncHTTPClient's connect timeout is a property of the whole client, so a notifier whose
/// `connectTimeout` differs from the others gets a second client on the same event loops;
/// with the default settings there is exactly one.
///
/// It is a `Service`: Herald runs it in its service group, and ``run()`` shuts every client
/// down once graceful shutdown begins (after the dispatchers have stopped). Tests, which have
/// no service group, call ``shutdown()`` themselves.
public final class SharedHTTPClient: Service, Sendable {
    private struct State {
        var clients: [Int64: HTTPClient] = [:]
        var isShutDown = false
    }

    private let state = Mutex(State())

    public init() {}

    /// The client for a connect timeout, created on first use.
    ///
    /// Throws a retryable ``DeliveryError`` once the client has been shut down (a delivery
    /// that races Herald's shutdown is then retried after the restart).
    func client(connectTimeout: Duration) throws(DeliveryError) -> HTTPClient {
        let key = connectTimeout.saturatingNanoseconds / 1_000_000
        let client: HTTPClient? = state.withLock { state in
            if state.isShutDown { return nil }
            if let existing = state.clients[key] { return existing }
            // Redirects are not followed: a webhook URL that redirects is a configuration
            // mistake, and following it would resend the body (and secrets) elsewhere.
            let configuration = HTTPClient.Configuration(
                redirectConfiguration: .disallow,
                timeout: .init(connect: .milliseconds(key)),
                connectionPool: .init())
            let made = HTTPClient(eventLoopGroup: HTTPClient.defaultEventLoopGroup, configuration: configuration)
            state.clients[key] = made
            return made
        }
        guard let client else { throw .retryable("Herald is shutting down; the HTTP client is closed") }
        return client
    }

    /// Waits for graceful shutdown, then closes every connection.
    public func run() async throws {
        try? await gracefulShutdown()
        try await shutdown()
    }

    /// Closes every client. Later deliveries fail with a retryable error. Safe to call twice.
    public func shutdown() async throws {
        let clients = state.withLock { state in
            state.isShutDown = true
            defer { state.clients = [:] }
            return Array(state.clients.values)
        }
        for client in clients {
            try await client.shutdown()
        }
    }
}
