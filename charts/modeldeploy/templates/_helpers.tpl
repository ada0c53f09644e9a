{{- define "modeldeploy.fullname" -}}
{{- printf "%s-operator" .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "modeldeploy.labels" -}}
app.kubernetes.io/name: modeldeploy-operator
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: operator
app.kubernetes.io/part-of: modeldeploy
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "modeldeploy.selectorLabels" -}}
app.kubernetes.io/name: modeldeploy-operator
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* The operator's permissions, shared by the ClusterRole and the per-namespace Roles. */}}
{{- define "modeldeploy.rules" -}}
# Watch ModelDeployments and remove the modeldeploy.io/rotate annotation once a rotation is done.
- apiGroups: ["modeldeploy.io"]
  resources: ["modeldeployments"]
  verbs: ["get", "list", "watch", "patch"]
# Children carry an owner reference with blockOwnerDeletion: true, which the OwnerReferencesPermissionEnforcement admission plugin (OpenShift, for one) allows only to who may update the owner's finalizers.
- apiGroups: ["modeldeploy.io"]
  resources: ["modeldeployments/finalizers"]
  verbs: ["update"]
# Write Ready/Progressing/Degraded conditions and observedGeneration.
- apiGroups: ["modeldeploy.io"]
  resources: ["modeldeployments/status"]
  verbs: ["get", "patch"]
# The runtime Deployment: server-side applied, watched for drift and rollout status; deleted when its image is outside allowedImages.
- apiGroups: ["apps"]
  resources: ["deployments"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
# Pods are only listed: while a rollout is unfinished, to tell a crash-looping model (Degraded) from a slow rollout; during a canary, to find the pod IPs whose /metrics are read.
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["list"]
# The model Service and, during a canary with spec.rollout.canary.httpRoute, the Service <name>-canary (deleted when the canary ends).
- apiGroups: [""]
  resources: ["services"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
# The hashed-keys Secret and one Secret per client: written, watched for drift and deletion (deleting a client Secret rotates its key).
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
# The ServiceMonitor per ModelDeployment; deleted when monitoring is disabled.
- apiGroups: ["monitoring.coreos.com"]
  resources: ["servicemonitors"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
# The NetworkPolicy per ModelDeployment with spec.networkPolicy.enabled; deleted when disabled.
- apiGroups: ["networking.k8s.io"]
  resources: ["networkpolicies"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
# The cert-manager Certificate per ModelDeployment with spec.tls.issuerRef; deleted when it goes.
- apiGroups: ["cert-manager.io"]
  resources: ["certificates"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
# The HorizontalPodAutoscaler per ModelDeployment with spec.autoscaling (engine hpa); deleted when autoscaling is off.
- apiGroups: ["autoscaling"]
  resources: ["horizontalpodautoscalers"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
# KEDA's ScaledObject per ModelDeployment with spec.autoscaling.engine keda; deleted when autoscaling is off.
- apiGroups: ["keda.sh"]
  resources: ["scaledobjects"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
# The HTTPRoute named by spec.rollout.canary.httpRoute: weighted stable and canary backends; deleted when the field goes.
- apiGroups: ["gateway.networking.k8s.io"]
  resources: ["httproutes"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
# Events for meaningful transitions (Ready, rollout done, model failed to load, monitoring skipped).
- apiGroups: ["", "events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- end -}}

{{/* Cluster-scoped reads kopf needs in every mode; nothing here exposes Secrets or workloads. */}}
{{- define "modeldeploy.clusterRules" -}}
# kopf watches CRDs, so the ServiceMonitor API is picked up (or dropped) when the Prometheus operator is installed (or removed) without a restart.
- apiGroups: ["apiextensions.k8s.io"]
  resources: ["customresourcedefinitions"]
  verbs: ["list", "watch"]
# kopf lists and watches namespaces to resolve the namespaces it serves.
- apiGroups: [""]
  resources: ["namespaces"]
  verbs: ["list", "watch"]
{{- end -}}


{{/* allowedImages as anchored RE2 expressions: '*' matches anything, everything else is literal
(the same conversion as modeldeploy_operator.image_policy.pattern_regex). */}}
{{- define "modeldeploy.allowedImageRegexes" -}}
{{- $regexes := list -}}
{{- range .Values.allowedImages -}}
{{- $regexes = append $regexes (printf "^%s$" (regexQuoteMeta . | replace "\\*" ".*")) -}}
{{- end -}}
{{- toJson $regexes -}}
{{- end -}}
