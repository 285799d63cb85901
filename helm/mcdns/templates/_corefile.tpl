{{/*
The CoreDNS server blocks that hand the cluster zones to mcdns, with CoreDNS's own
kubernetes plugin as the fallback when no mcdns pod answers. This is the one source of the
Corefile: NOTES.txt prints it with the release's values, config/coredns/Corefile is it
rendered with the example values, and the README shows the same text (a test checks all
three agree).

Called with a dict: ip, port, zone, clusterset (zone), cidrs (list), ttl, fallbackPort.
*/}}
{{- define "mcdns.corefile" -}}
{{- $reverse := "" -}}
{{- range .cidrs }}{{ $reverse = printf "%s %s" $reverse . }}{{ end -}}
{{- $zones := printf "%s%s" .zone $reverse -}}
# mcdns: begin. Add these blocks; the ".:53" block stays as it is.
#
# The cluster zone and the reverse zones of the cluster's service and pod CIDRs: mcdns
# first, and while no mcdns pod answers, CoreDNS's own kubernetes plugin (the last block).
{{ range splitList " " $zones }}{{ . }}:53 {{ end }}{
    errors
    # At most mcdns's TTL, so a failover that mcdns makes reaches clients within one TTL.
    cache {{ .ttl }} {
        success 9984 {{ .ttl }}
        denial 9984 {{ .ttl }}
    }
    # mcdns while it answers, else the fallback. CoreDNS's defaults apply: an upstream
    # that fails is probed every 0.5s (health_check) and skipped after 2 failed probes
    # (max_fails); a query that fails goes to the next upstream at once.
    forward . {{ .ip }}:{{ .port }} 127.0.0.1:{{ .fallbackPort }} {
        policy sequential
    }
    prometheus :9153
    reload
}

# The clusterset zone: only mcdns serves it.
{{ .clusterset }}:53 {
    errors
    cache {{ .ttl }} {
        success 9984 {{ .ttl }}
        denial 9984 {{ .ttl }}
    }
    forward . {{ .ip }}:{{ .port }}
    prometheus :9153
}

# The fallback, on loopback only: CoreDNS's kubernetes plugin as before mcdns, answering
# the local Services (no failover to other clusters) while mcdns is down.
{{ range splitList " " $zones }}{{ . }}:{{ $.fallbackPort }} {{ end }}{
    bind 127.0.0.1
    errors
    kubernetes {{ $zones }} {
        pods insecure
        ttl {{ .ttl }}
    }
    prometheus :9153
    ready
}
# mcdns: end
{{- end }}

{{/* The arguments of mcdns.corefile for this release; the IP is passed in by the caller. */}}
{{- define "mcdns.corefileArgs" -}}
{{- $cidrs := concat (.Values.config.service_cidrs | default list) (.Values.config.pod_cidrs | default list) -}}
{{- dict "port" .Values.service.port "zone" .Values.config.zone "clusterset" .Values.config.clusterset_zone "cidrs" $cidrs "ttl" .Values.config.ttl "fallbackPort" 5301 | toJson -}}
{{- end }}
