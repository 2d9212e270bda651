import Foundation
import HeraldCore
import Testing

/// `herald serve` reloading its configuration on SIGHUP, with the real binary.
@Suite("config reload end to end", .serialized)
struct ReloadEndToEndTests {
    let oldSecret = "reload-old-secret-31a7"
    let newSecret = "reload-new-secret-64c2"

    func event(_ name: String) throws -> Data {
        try Data(contentsOf: HeraldProcess.sharedVectors.appendingPathComponent("jicoo-events/\(name).json"))
    }

    /// A configuration whose endpoint reads its secret from `jicoo.secret`, with `endpointExtra`
    /// lines added to the endpoint and every event written by a file notifier to `output`.
    func writeConfig(_ dir: String, output: String, endpointExtra: String = "") throws -> String {
        try """
            storage: { path: ./journal }
            log: { level: info, format: json }
            endpoints:
              - path: /hooks/jicoo
                secretsFile: ./jicoo.secret
            \(endpointExtra)
            notifiers:
              audit: { kind: file, path: ./\(output) }
            routes:
              - { events: ["*"], notify: [audit] }
            """.write(toFile: "\(dir)/herald.yaml", atomically: true, encoding: .utf8)
        return "\(dir)/herald.yaml"
    }

    func hangUp(_ herald: HeraldProcess) { kill(herald.process.processIdentifier, SIGHUP) }

    func count(_ needle: String, in text: String) -> Int { text.components(separatedBy: needle).count - 1 }

    @Test func sighupAppliesAValidConfigAndKeepsTheOldOneOnAnInvalidOne() async throws {
        let dir = tempDir()
        try "\(oldSecret)\n".write(toFile: "\(dir)/jicoo.secret", atomically: true, encoding: .utf8)
        let path = try writeConfig(dir, output: "first.jsonl")
        let herald = try await HeraldProcess(config: path)
        let url = "\(herald.url)/hooks/jicoo"
        #expect(try await postSigned(url, body: try event("guest_booked"), secret: oldSecret).0 == 202)
        #expect(try await waitUntil { jsonLines("\(dir)/first.jsonl").count == 1 })

        // A new secret (in the secret file) and a new output file.
        try "\(newSecret)\n".write(toFile: "\(dir)/jicoo.secret", atomically: true, encoding: .utf8)
        _ = try writeConfig(dir, output: "second.jsonl")
        hangUp(herald)
        #expect(try await waitUntil { herald.log.contains("configuration reloaded") })
        #expect(herald.log.contains("endpoint /hooks/jicoo (secrets)"))
        #expect(herald.log.contains("notifier audit (settings)"))
        #expect(try await postSigned(url, body: try event("guest_cancelled"), secret: oldSecret).0 == 401)
        #expect(try await postSigned(url, body: try event("guest_cancelled"), secret: newSecret).0 == 202)
        #expect(try await waitUntil { jsonLines("\(dir)/second.jsonl").count == 1 })
        #expect(jsonLines("\(dir)/second.jsonl").first?["event"] as? String == "guest_cancelled")
        #expect(jsonLines("\(dir)/first.jsonl").count == 1)

        // A misspelt key: nothing changes, the error names the file, the line and the key.
        _ = try writeConfig(dir, output: "third.jsonl", endpointExtra: "    tolerence: 10m")
        let text = try String(contentsOfFile: path, encoding: .utf8)
        let line = try #require(text.split(separator: "\n", omittingEmptySubsequences: false).firstIndex { $0.contains("tolerence") }) + 1
        hangUp(herald)
        #expect(try await waitUntil { herald.log.contains("configuration reload failed") })
        let failure = try #require(herald.log.split(separator: "\n").first { $0.contains("configuration reload failed") })
        #expect(failure.contains("\(path):\(line)"), "\(failure)")
        #expect(failure.contains("endpoints[0].tolerence"))
        #expect(failure.contains(#""level":"error""#))
        #expect(try await postSigned(url, body: try event("host_rescheduled"), secret: newSecret).0 == 202)
        #expect(try await postSigned(url, body: try event("host_rescheduled"), secret: oldSecret).0 == 401)
        #expect(try await waitUntil { jsonLines("\(dir)/second.jsonl").count == 2 })
        #expect(!FileManager.default.fileExists(atPath: "\(dir)/third.jsonl"))

        let metrics = try await HTTPGet("\(herald.url)/metrics")
        #expect(metrics.contains(#"herald_config_reloads_total{result="success"} 1"#), "\(metrics)")
        #expect(metrics.contains(#"herald_config_reloads_total{result="failure"} 1"#))
        #expect(metrics.contains("herald_config_last_reload_successful 0"))
        #expect(metrics.contains("herald_config_last_reload_success_timestamp_seconds"))
        #expect(try await herald.stop() == 0)
        #expect(!herald.log.contains(oldSecret) && !herald.log.contains(newSecret))
    }

    @Test func changesThatNeedARestartAreRefused() async throws {
        let dir = tempDir()
        try "\(oldSecret)\n".write(toFile: "\(dir)/jicoo.secret", atomically: true, encoding: .utf8)
        let path = try writeConfig(dir, output: "out.jsonl")
        let herald = try await HeraldProcess(config: path)
        try """
            storage: { path: ./elsewhere }
            log: { level: info, format: json }
            endpoints:
              - { path: /hooks/jicoo, secretsFile: ./jicoo.secret }
            notifiers:
              audit: { kind: file, path: ./out.jsonl }
              extra: { kind: file, path: ./extra.jsonl }
            routes:
              - { events: ["*"], notify: [audit, extra] }
            """.write(toFile: path, atomically: true, encoding: .utf8)
        hangUp(herald)
        #expect(try await waitUntil { herald.log.contains("configuration reload failed") })
        #expect(herald.log.contains("storage.path changed: restart Herald to apply"))
        #expect(herald.log.contains("notifiers added (extra): restart Herald to apply"))
        // The old routes still apply: one delivery, to audit only.
        let (status, body) = try await postSigned("\(herald.url)/hooks/jicoo", body: try event("guest_booked"), secret: oldSecret)
        #expect(status == 202)
        #expect(body.contains(#""deliveries":1"#))
        #expect(try await waitUntil { jsonLines("\(dir)/out.jsonl").count == 1 })
        #expect(try await herald.stop() == 0)
    }

    /// The email notifier is a service with a connection pool: after a reload that changes
    /// its sender, the next mail goes out through the new instance.
    @Test func emailSettingsChangeOnReload() async throws {
        let smtp = try await SMTPServerProcess()
        defer { smtp.stop() }
        let dir = tempDir()
        try "\(oldSecret)\n".write(toFile: "\(dir)/jicoo.secret", atomically: true, encoding: .utf8)
        func write(from: String) throws -> String {
            try """
                storage: { path: ./journal }
                log: { level: info, format: json }
                endpoints:
                  - { path: /hooks/jicoo, secretsFile: ./jicoo.secret }
                notifiers:
                  desk:
                    kind: smtp
                    host: 127.0.0.1
                    port: \(smtp.port)
                    security: none
                    from: \(from)
                    to: [desk@example.com]
                routes:
                  - { events: ["*"], notify: [desk] }
                """.write(toFile: "\(dir)/herald.yaml", atomically: true, encoding: .utf8)
            return "\(dir)/herald.yaml"
        }
        let herald = try await HeraldProcess(config: try write(from: "old-bot@example.com"))
        #expect(try await postSigned("\(herald.url)/hooks/jicoo", body: try event("guest_booked"), secret: oldSecret).0 == 202)
        #expect(try await waitUntil { smtp.messages.count == 1 })
        _ = try write(from: "new-bot@example.com")
        hangUp(herald)
        #expect(try await waitUntil { herald.log.contains("configuration reloaded") })
        #expect(herald.log.contains("notifier desk (settings)"))
        #expect(try await postSigned("\(herald.url)/hooks/jicoo", body: try event("guest_cancelled"), secret: oldSecret).0 == 202)
        #expect(try await waitUntil { smtp.messages.count == 2 })
        #expect(smtp.messages.map { $0["mail_from"] as? String } == ["old-bot@example.com", "new-bot@example.com"])
        #expect(try await herald.stop() == 0)
    }
}
