import Foundation
import GRDB

/// How every MyIM role opens its own SQLite file: the directory created 0700 (it holds
/// password hashes or messages), WAL through GRDB's pool, a 5 s busy timeout, and the role's
/// migrations run before first use.
public enum SQLiteFile {
    public static func openPool(path: String, migrator: DatabaseMigrator) throws -> DatabasePool {
        let directory = (path as NSString).deletingLastPathComponent
        if !directory.isEmpty {
            try FileManager.default.createDirectory(
                atPath: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        }
        var configuration = Configuration()
        configuration.busyMode = .timeout(5)
        let pool = try DatabasePool(path: path, configuration: configuration)
        try migrator.migrate(pool)
        return pool
    }
}
