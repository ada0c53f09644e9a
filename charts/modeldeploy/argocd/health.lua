-- Argo CD health check for modeldeploy.io/ModelDeployment (argocd-cm:
-- resource.customizations.health.modeldeploy.io_ModelDeployment). It reads the kstatus-style
-- status the operator writes; the mapping is documented in docs/operator.md ("GitOps health").
-- Argo CD runs it in gopher-lua (Lua 5.1): `obj` is the object, the result is {status, message}.
local hs = {}

local function condition(status, kind)
  if status.conditions == nil then
    return nil
  end
  for _, item in ipairs(status.conditions) do
    if item.type == kind then
      return item
    end
  end
  return nil
end

local status = obj.status
local generation = obj.metadata.generation
if status == nil or status.observedGeneration == nil or status.observedGeneration ~= generation then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe generation " .. tostring(generation)
  return hs
end

if status.rollout ~= nil and status.rollout.phase == "Aborted" then
  hs.status = "Degraded"
  hs.message = status.rollout.message or "The rollout was aborted"
  return hs
end

local degraded = condition(status, "Degraded")
if degraded ~= nil and degraded.status == "True" then
  hs.status = "Degraded"
  hs.message = degraded.message or degraded.reason
  return hs
end

local ready = condition(status, "Ready")
if ready ~= nil and ready.status == "True" then
  hs.status = "Healthy"
  hs.message = ready.message or "Ready"
  return hs
end

hs.status = "Progressing"
local progressing = condition(status, "Progressing")
if progressing ~= nil and progressing.message ~= nil then
  hs.message = progressing.message
elseif ready ~= nil and ready.message ~= nil then
  hs.message = ready.message
else
  hs.message = "Waiting for the ModelDeployment to become Ready"
end
return hs
