import Foundation
import GRDB

/// A journal failure, with what the user can do about it and the file concerned.
public struct JournalError: Error, Sendable, CustomStringConvertible {
    public enum Kind: Sendable, Equatable {
        /// ``SQLiteJournal/openExisting(directory:dedupeTTL:clock:)`` found no journal.
        case notFound
        /// The file or its directory cannot be opened or created.
        case cannotOpen
        /// The disk is full: nothing more can be accepted until space is freed.
        case diskFull
        /// Another process held a lock longer than ``SQLiteJournal/busyTimeout``.
        case locked
        /// The file is damaged or is not a Herald journal.
        case corrupted
        /// The file or its directory is read-only.
        case readOnly
        /// An event with the same id is already stored.
        case duplicateEventID
        /// The database server cannot be reached (a shared journal): retry later.
        case unavailable
        /// The journal was written by a newer Herald whose schema this one does not know.
        case newerSchema
        /// Any other failure, e.g. an I/O error.
        case other
    }

    public var kind: Kind
    /// The journal file, or the database with its password left out.
    public var path: String
    /// What happened and what to do, for logs and CLI output.
    public var message: String

    public var description: String { message }

    /// An error of `kind`; `message` must say what to do and must not contain a secret.
    public init(_ kind: Kind, path: String, _ message: String) {
        self.kind = kind
        self.path = path
        self.message = message
    }

    /// Wraps any error thrown while using the journal at `path`; a JournalError stays as is.
    init(_ error: any Error, path: String) {
        if let error = error as? JournalError {
            self = error
            return
        }
        guard let error = error as? DatabaseError else {
            self.init(.other, path: path, "journal \(path): \(error)")
            return
        }
        let detail = error.message ?? "\(error.resultCode)"
        switch error.resultCode {
        case .SQLITE_FULL:
            self.init(.diskFull, path: path, "the disk holding \(path) is full: free some space")
        case .SQLITE_BUSY, .SQLITE_LOCKED:
            self.init(.locked, path: path, "the journal \(path) is locked by another process "
                + "(another herald, or a CLI command in progress): retry, or stop that process")
        case .SQLITE_CORRUPT, .SQLITE_NOTADB:
            self.init(.corrupted, path: path, "\(path) is corrupted or is not a Herald journal (\(detail)): "
                + "restore it from a backup, or move it away to start an empty journal")
        case .SQLITE_CANTOPEN:
            self.init(.cannotOpen, path: path, "cannot open the journal \(path) (\(detail)): "
                + "check that its directory exists and is writable")
        case .SQLITE_READONLY, .SQLITE_PERM, .SQLITE_AUTH:
            self.init(.readOnly, path: path, "the journal \(path) is read-only (\(detail)): check its permissions")
        case .SQLITE_CONSTRAINT:
            self.init(.duplicateEventID, path: path, "an event with this id is already in \(path) (\(detail))")
        default:
            self.init(.other, path: path, "journal \(path): \(detail)")
        }
    }
}
