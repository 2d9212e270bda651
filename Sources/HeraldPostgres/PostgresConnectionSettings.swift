import Foundation
import HeraldCore
import NIOSSL
import PostgresNIO

extension PostgresJournal {
    /// When TLS is used, and how the server's certificate is checked.
    enum TLSUse { case disable, prefer, require }

    /// TLS as the URL's `sslmode` says, with libpq's meanings. The CA file is read here, so a
    /// missing or unreadable `sslrootcert` fails at start.
    static func tls(_ url: PostgresURL) throws -> (TLSConfiguration, TLSUse) {
        var tls = TLSConfiguration.makeClientConfiguration()
        if let file = url.sslRootCert {
            do {
                tls.trustRoots = .certificates(try NIOSSLCertificate.fromPEMFile(file))
            } catch {
                throw JournalError(.cannotOpen, path: url.description, "cannot read the certificate authorities in sslrootcert \(file): \(error)")
            }
        }
        switch url.sslMode {
        case .disable:
            return (tls, .disable)
        case .prefer:
            tls.certificateVerification = .none
            return (tls, .prefer)
        case .require:
            // As libpq: with a root certificate, `require` checks the chain like `verify-ca`.
            tls.certificateVerification = url.sslRootCert == nil ? .none : .noHostnameVerification
            return (tls, .require)
        case .verifyCA:
            tls.certificateVerification = .noHostnameVerification
            return (tls, .require)
        case .verifyFull:
            tls.certificateVerification = .fullVerification
            return (tls, .require)
        }
    }

    static func password(_ url: PostgresURL) -> String? { url.password.map { String(decoding: $0.bytes, as: UTF8.self) } }

    /// The pool's configuration for `url`.
    static func configuration(_ url: PostgresURL, poolSize: Int) throws -> PostgresClient.Configuration {
        let (tls, use) = try tls(url)
        let mode: PostgresClient.Configuration.TLS = switch use {
        case .disable: .disable
        case .prefer: .prefer(tls)
        case .require: .require(tls)
        }
        var configuration = PostgresClient.Configuration(host: url.host, port: url.port, username: url.user,
                                                         password: password(url), database: url.database, tls: mode)
        configuration.options.maximumConnections = poolSize
        configuration.options.connectTimeout = .seconds(5)
        configuration.options.additionalStartupParameters = [("application_name", "herald")]
        return configuration
    }

    /// One connection outside the pool (for LISTEN, and to learn why the pool cannot connect).
    static func directConfiguration(_ url: PostgresURL) throws -> PostgresConnection.Configuration {
        let (tls, use) = try tls(url)
        let mode: PostgresConnection.Configuration.TLS
        switch use {
        case .disable: mode = .disable
        case .prefer, .require:
            let context: NIOSSLContext
            do { context = try NIOSSLContext(configuration: tls) } catch {
                throw JournalError(.cannotOpen, path: url.description, "cannot set up TLS for PostgreSQL: \(error)")
            }
            mode = use == .prefer ? .prefer(context) : .require(context)
        }
        var configuration = PostgresConnection.Configuration(host: url.host, port: url.port, username: url.user,
                                                             password: password(url), database: url.database, tls: mode)
        configuration.options.connectTimeout = .seconds(5)
        configuration.options.additionalStartupParameters = [("application_name", "herald")]
        return configuration
    }
}

/// Turns what postgres-nio throws into a ``JournalError`` that says what to do, naming the
/// server by host and port and the user by name, never the password.
enum PostgresErrors {
    static func journalError(_ error: any Error, url: PostgresURL) -> any Error {
        let server = "PostgreSQL at \(url.server)"
        func make(_ kind: JournalError.Kind, _ message: String) -> JournalError {
            JournalError(kind, path: url.description, message)
        }
        switch error {
        case is CancellationError:
            return error
        case var error as JournalError:
            if error.path.isEmpty { error.path = url.description }
            return error
        case let error as PostgresTransactionError:
            guard let inner = error.closureError ?? error.commitError ?? error.beginError else {
                return make(.other, "\(server): the transaction failed")
            }
            return journalError(inner, url: url)
        case let error as PSQLError:
            return psqlError(error, url: url, server: server, make: make)
        case is NIOSSLError, is BoringSSLError:
            return make(.cannotOpen, "TLS with \(server) failed (\(error)): check sslmode and sslrootcert")
        case is PostgresDecodingError:
            return make(.corrupted, "\(server): a journal table holds a value of an unexpected type; is the schema Herald's?")
        default:
            return make(.unavailable, "cannot reach \(server) (\(error))")
        }
    }

    private static func psqlError(_ error: PSQLError, url: PostgresURL, server: String,
                                  make: (JournalError.Kind, String) -> JournalError) -> any Error {
        switch error.code {
        case .server:
            let state = error.serverInfo?[.sqlState] ?? ""
            let text = error.serverInfo?[.message] ?? "an error"
            switch state {
            case "28P01", "28000":
                return make(.cannotOpen, "\(server) refused user \(url.user): \(text); check the URL's user and password")
            case "3D000":
                return make(.notFound, "\(server) has no database \(url.database): create it, or fix the URL")
            case "53100":
                return make(.diskFull, "the disk of \(server) is full: \(text)")
            case "25006":
                return make(.readOnly, "\(server) is read-only (\(text)): point the URL at the primary")
            case "55P03", "40P01", "40001":
                return make(.locked, "\(server): \(text)")
            case "23505":
                return make(.duplicateEventID, "\(server): \(text)")
            case "57P01", "57P02", "57P03", "53300":
                return make(.unavailable, "\(server) is not accepting work: \(text)")
            case _ where state.hasPrefix("08"):
                return make(.unavailable, "cannot reach \(server): \(text)")
            default:
                return make(.other, "\(server): \(text) (SQLSTATE \(state))")
            }
        case .sslUnsupported:
            return make(.cannotOpen, "\(server) does not offer TLS, which sslmode=\(url.sslMode.rawValue) requires")
        case .failedToAddSSLHandler:
            return make(.cannotOpen, "TLS with \(server) could not start: check sslmode and sslrootcert")
        case .authMechanismRequiresPassword:
            return make(.cannotOpen, "\(server) asks user \(url.user) for a password; put one in the URL")
        case .unsupportedAuthMechanism, .saslError:
            return make(.cannotOpen, "\(server) refused user \(url.user)'s authentication: check the URL's user and password")
        case .connectionError, .serverClosedConnection, .clientClosedConnection, .uncleanShutdown, .poolClosed, .queryCancelled:
            if let underlying = error.underlying, underlying is NIOSSLError || underlying is BoringSSLError {
                return make(.cannotOpen, "TLS with \(server) failed (\(underlying)): check sslmode and sslrootcert")
            }
            let reason = error.underlying.map { " (\($0))" } ?? ""
            return make(.unavailable, "cannot reach \(server)\(reason)")
        default:
            return make(.other, "\(server): \(error.code)")
        }
    }
}
