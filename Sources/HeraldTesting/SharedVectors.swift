import Foundation

/// The team's shared test data, `../shared/vectors` beside Herald's repository: for Herald's
/// own tests only (plugin authors use ``SampleEvents``, which embeds the event bodies).
package enum SharedVectors {
    /// The repository root, found from this file's path at build time.
    package static let repositoryRoot = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    /// `../shared/vectors`.
    package static let directory = repositoryRoot.deletingLastPathComponent().appendingPathComponent("shared/vectors")
    /// The Jicoo webhook bodies, one file per event.
    package static let jicooEvents = directory.appendingPathComponent("jicoo-events")

    /// The body of `jicoo-events/<name>.json`.
    package static func jicooBody(_ name: String) throws -> Data {
        try Data(contentsOf: jicooEvents.appendingPathComponent("\(name).json"))
    }
}
