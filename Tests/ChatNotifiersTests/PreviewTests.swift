import Foundation
import HeraldCore
import HeraldTesting
import Testing

@testable import ChatNotifiers

/// `preview(_:)` (what `herald render` prints) is the request `deliver(_:)` sends: same body,
/// same URL and headers, secrets redacted, and nothing sent by the preview itself.
@Suite("Previews show what is sent")
struct PreviewTests {
    static let secrets = ["T0SECRET123", "B0SECRET456", "secretToken789"]

    /// Settings of each kind pointing at `base`, with secrets in the URL and tokens.
    static func settings(_ kind: String, _ base: String) -> String {
        switch kind {
        case "chatwork": "token: secretToken789\nroomID: \"123\"\napiBaseURL: \(base)"
        case "line": "token: secretToken789\nto: U123\napiBaseURL: \(base)"
        case "telegram": "token: \"123456:secretToken789\"\nchatID: \"-100\"\napiBaseURL: \(base)"
        case "webhook": "url: \(base)/in/secretToken789\nsecret: whsec_c2VjcmV0"
        default: "webhookURL: \(base)/services/T0SECRET123/B0SECRET456"
        }
    }

    static func make<P: NotifierPlugin>(_ type: P.Type, _ yaml: String, _ context: PluginContext) throws -> any NotifierPlugin {
        try P.configured(yaml, context: context)
    }

    @Test(arguments: ChatNotifierKinds.all.map { $0.kind })
    func previewIsTheRequestDelivered(kind: String) async throws {
        let type = try #require(ChatNotifierKinds.all.first { $0.kind == kind })
        try await Harness.with { harness in
            try await HTTPRecorder.with { server in
                let plugin = try Self.make(type, Self.settings(kind, server.base), harness.context)
                let notification = try Fixture.notification()
                let preview = try #require(try plugin.preview(notification))
                #expect(server.requests.isEmpty)

                try await plugin.deliver(notification)
                let request = try #require(server.requests.first)
                let body = try #require(preview.parts.first)
                #expect(preview.parts.count == 1)
                #expect(body.content == request.text)
                #expect(body.contentType == request.headers["content-type"])
                #expect(preview.destination.hasPrefix("POST \(server.base)"))
                // The shown path is the requested one with secret parts masked: its other pieces
                // appear in the request, in order, from start to end.
                let shownPath = String(preview.destination.dropFirst("POST \(server.base)".count))
                let pieces = shownPath.components(separatedBy: "<redacted>")
                var rest = Substring(request.uri)
                #expect(rest.hasPrefix(pieces[0]) && rest.hasSuffix(pieces[pieces.count - 1]), "\(shownPath) vs \(request.uri)")
                for piece in pieces where !piece.isEmpty {
                    let found = try #require(rest.range(of: piece), "\(shownPath) vs \(request.uri)")
                    rest = rest[found.upperBound...]
                }
                for header in preview.headers where !["webhook-timestamp", "webhook-signature"].contains(header.name) {
                    let sent = try #require(request.headers[header.name.lowercased()], "\(header.name) was not sent")
                    #expect(header.value == sent || header.value.contains("<redacted>"), "\(header.name)")
                }
                let shown = ([preview.destination] + preview.headers.map(\.value) + preview.parts.map(\.content)).joined(separator: "\n")
                for secret in Self.secrets { #expect(!shown.contains(secret), "\(kind) shows \(secret)") }
            }
        }
    }
}
