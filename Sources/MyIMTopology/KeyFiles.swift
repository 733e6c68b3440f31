import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Private file I/O for the key directory: files are created 0600 from the first byte and
/// replaced atomically, so a crash never leaves a half-written or readable key behind.
enum KeyFiles {
    static let fileMode: mode_t = 0o600
    static let directoryMode: mode_t = 0o700

    static func exists(_ path: String) -> Bool {
        var info = stat()
        return lstat(path, &info) == 0
    }

    /// Creates `path` (and its parents) as needed and makes it 0700.
    static func prepareDirectory(_ path: String) throws(KeyError) {
        do {
            try FileManager.default.createDirectory(
                atPath: path,
                withIntermediateDirectories: true,
                attributes: [.posixPermissions: Int(directoryMode)]
            )
        } catch {
            throw KeyError(.io, file: path, "cannot create the key directory: \(error.localizedDescription)")
        }
        var info = stat()
        guard stat(path, &info) == 0, info.st_mode & S_IFMT == S_IFDIR else {
            throw KeyError(.io, file: path, "is not a directory")
        }
        if info.st_mode & 0o777 != directoryMode, chmod(path, directoryMode) != 0 {
            throw KeyError(.permissions, file: path, "cannot be made mode 0700: \(String(cString: strerror(errno)))")
        }
    }

    /// Writes `text` to `path` through a 0600 temporary file in the same directory and a rename.
    static func write(_ text: String, to path: String) throws(KeyError) {
        let directory = (path as NSString).deletingLastPathComponent
        let temporary = "\(directory)/.\((path as NSString).lastPathComponent).\(UInt32.random(in: 0...UInt32.max)).tmp"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, fileMode)
        guard fd >= 0 else {
            throw KeyError(.io, file: path, "cannot be written: \(String(cString: strerror(errno)))")
        }
        var failure: String?
        if fchmod(fd, fileMode) != 0 { failure = "fchmod: \(String(cString: strerror(errno)))" }
        let bytes = Array(text.utf8)
        var offset = 0
        while failure == nil, offset < bytes.count {
            let written = bytes[offset...].withUnsafeBytes { Foundation.write(fd, $0.baseAddress, $0.count) }
            if written < 0 {
                if errno == EINTR { continue }
                failure = "write: \(String(cString: strerror(errno)))"
            } else {
                offset += written
            }
        }
        if failure == nil, fsync(fd) != 0 { failure = "fsync: \(String(cString: strerror(errno)))" }
        close(fd)
        if failure == nil, rename(temporary, path) != 0 { failure = "rename: \(String(cString: strerror(errno)))" }
        if let failure {
            unlink(temporary)
            throw KeyError(.io, file: path, "cannot be written (\(failure))")
        }
    }

    /// Reads a private file, refusing one that is missing or that other users could read.
    static func readPrivate(_ path: String, hint: String) throws(KeyError) -> String {
        try read(path, hint: hint, requirePrivate: true)
    }

    /// Reads a file whose content is public (a certificate), refusing only a missing one.
    static func readPublic(_ path: String, hint: String) throws(KeyError) -> String {
        try read(path, hint: hint, requirePrivate: false)
    }

    private static func read(_ path: String, hint: String, requirePrivate: Bool) throws(KeyError) -> String {
        var info = stat()
        guard stat(path, &info) == 0 else {
            if errno == ENOENT {
                throw KeyError(.missing, file: path, "is missing; \(hint)")
            }
            throw KeyError(.io, file: path, "cannot be read: \(String(cString: strerror(errno)))")
        }
        let mode = info.st_mode & 0o777
        guard !requirePrivate || mode & 0o077 == 0 else {
            throw KeyError(
                .permissions,
                file: path,
                "has mode 0\(String(mode, radix: 8)), so other users may read this private file; run `chmod 600 \(path)`"
            )
        }
        guard let data = FileManager.default.contents(atPath: path), let text = String(data: data, encoding: .utf8) else {
            throw KeyError(.io, file: path, "cannot be read as PEM text")
        }
        return text
    }

    /// The permission bits of `path`, for tests and reports.
    static func mode(of path: String) -> Int? {
        var info = stat()
        guard stat(path, &info) == 0 else { return nil }
        return Int(info.st_mode & 0o777)
    }
}
