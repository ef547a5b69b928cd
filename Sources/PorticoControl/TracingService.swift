//===----------------------------------------------------------------------===//
// This source file is part of the Portico open source project
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import Logging
import OTel
import PorticoCore
import ServiceLifecycle
import Tracing

/// The tracer behind `tracing` (swift-otel's OTLP/HTTP exporter, batched) and the filter that uses it. Its export
/// runs as a task on the control plane for the life of the server; a change of `tracing` takes effect on restart.
final class TracingService: Sendable {
    let filter: any ProxyFilter
    private let group: ServiceGroup
    private let task: Task<Void, Never>

    init(_ c: TracingConfig, logger: Logger) throws {
        var config = OTel.Configuration.default
        config.serviceName = c.serviceName ?? "portico"
        config.logs.enabled = false
        config.metrics.enabled = false
        config.traces.enabled = true
        config.traces.exporter = .otlp
        config.traces.otlpExporter.endpoint = c.endpoint
        config.traces.otlpExporter.protocol = c.encoding == .json ? .httpJSON : .httpProtobuf
        // The filter samples new traces itself (`TracingFilter.sampleRatio`); what reaches the tracer is traced.
        config.traces.sampler = .parentBasedAlwaysOn
        config.traces.batchSpanProcessor.scheduleDelay = .nanoseconds(c.exportDelay?.nanoseconds ?? 5_000_000_000)
        config.propagators = [.traceContext]
        config.diagnosticLogger = .custom(logger)
        config.diagnosticLogLevel = .warning
        let backend = try OTel.makeTracingBackend(configuration: config)
        self.filter = Self.makeFilter(backend.factory, sampleRatio: c.sampleRatio ?? 1)
        // In a group of its own, so stopping it is a graceful shutdown: the last spans are exported first.
        let group = ServiceGroup(services: [backend.service], logger: logger)
        self.group = group
        self.task = Task { try? await group.run() }
    }

    private static func makeFilter<T: Tracer>(_ tracer: T, sampleRatio: Double) -> any ProxyFilter {
        TracingFilter(tracer: tracer, sampleRatio: sampleRatio)
    }

    func stop() async {
        await self.group.triggerGracefulShutdown()
        await self.task.value
    }
}
