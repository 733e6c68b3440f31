import NIOCore

extension Optional where Wrapped == SocketAddress {
    /// `127.0.0.1:7000` (`[::1]:7000`), for logs; `?` when there is none.
    var display: String {
        guard let address = self, let ip = address.ipAddress, let port = address.port else { return self?.description ?? "?" }
        return ip.contains(":") ? "[\(ip)]:\(port)" : "\(ip):\(port)"
    }
}
