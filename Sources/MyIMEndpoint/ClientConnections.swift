import NIOCore

/// The client connections one listener holds, per event loop, so that shutting down can close
/// each of them.
///
/// One array slot per connection, on its own event loop, with no lock and no callback: the
/// handler adds itself when it joins a pipeline and removes itself when it leaves (swapping the
/// last one into its slot). swift-nio-extras' `ServerQuiescingHelper` did this job with a
/// close-future callback and a locked dictionary entry per connection, about 120 bytes each.
final class ClientConnections: Sendable {
    /// What the array holds: each handler knows its slot.
    protocol Member: AnyObject {
        var slot: Int { get set }
        /// The endpoint is shutting down: close the connection, telling the center why.
        func shutDown()
    }

    private let loops: [ObjectIdentifier: NIOLoopBoundBox<[any Member]>]

    init(group: any EventLoopGroup) {
        var loops: [ObjectIdentifier: NIOLoopBoundBox<[any Member]>] = [:]
        for loop in group.makeIterator() {
            loops[ObjectIdentifier(loop)] = NIOLoopBoundBox.makeBoxSendingValue([], eventLoop: loop)
        }
        self.loops = loops
    }

    /// On `loop`'s thread.
    func add(_ member: any Member, on loop: any EventLoop) {
        guard let box = loops[ObjectIdentifier(loop)] else {
            assertionFailure("a connection on an event loop outside the listener's group")
            return
        }
        member.slot = box.value.count
        box.value.append(member)
    }

    /// On `loop`'s thread; once per ``add(_:on:)``.
    func remove(_ member: any Member, on loop: any EventLoop) {
        guard let box = loops[ObjectIdentifier(loop)], box.value.indices.contains(member.slot),
              box.value[member.slot] === member
        else { return }
        let last = box.value.removeLast()
        if last !== member {
            last.slot = member.slot
            box.value[member.slot] = last
        }
    }

    /// How many connections are held, summed over the loops.
    func count() async -> Int {
        var total = 0
        for box in loops.values {
            total += (try? await box.eventLoop.submit { box.value.count }.get()) ?? 0
        }
        return total
    }

    /// Asks every connection held to shut down, on its loop.
    func shutDownAll() async {
        for box in loops.values {
            try? await box.eventLoop.submit {
                // A shut-down connection removes itself later (its close completes on a later tick).
                for member in box.value { member.shutDown() }
            }.get()
        }
    }
}
