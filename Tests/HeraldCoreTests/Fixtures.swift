import Foundation
import HeraldTesting
@testable import HeraldCore

/// Paths to the team's shared test data (`../shared/vectors` beside the repository).
enum Fixtures {
    static let repoRoot = SharedVectors.repositoryRoot
    static let vectors = SharedVectors.directory
    static let events = SharedVectors.jicooEvents

    static func eventBody(_ name: String) throws -> Data {
        try Data(contentsOf: events.appendingPathComponent("\(name).json"))
    }

    static func event(_ name: String, endpoint: String = "/hooks/jicoo") throws -> Event {
        try EventSource.jicoo.decode(body: try eventBody(name), endpoint: endpoint)
    }

    static var eventNames: [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: events.path)) ?? [])
            .filter { $0.hasSuffix(".json") }.map { String($0.dropLast(5)) }.sorted()
    }

    static func tempDir() -> String {
        let path = NSTemporaryDirectory() + "herald-test-" + UUID().uuidString
        try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }
}

/// Case-insensitive header lookup over a dictionary, as HTTP does.
func headers(_ dict: [String: String]) -> (String) -> String? {
    { name in dict.first { $0.key.lowercased() == name.lowercased() }?.value }
}
