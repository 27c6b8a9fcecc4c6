"""What takes both managers: a workspace deleted with its objects, a Flow made from one upload
(and its workspace removed again when the Flow is refused), and whose log an id names.

Below HTTP, so handlers stay thin and the managers know nothing of each other beyond what
ObjectManager needs of workspaces to start an object.
"""

from __future__ import annotations

from typing import AsyncIterable, Callable

from .errors import Conflict, ContractError
from .logs import Log
from .objects import ObjectManager
from .records import JObject
from .uploads import FilePart
from .workspaces import Workspace, WorkspaceManager


class Coordinator:
    def __init__(self, workspaces: WorkspaceManager, objects: ObjectManager) -> None:
        self.workspaces = workspaces
        self.objects = objects

    async def delete_workspace(self, workspace_id: str, force: bool) -> Workspace:
        """Delete a workspace; with `force` its objects first, else 409 while any runs."""
        self.workspaces.get(workspace_id)
        if force:
            await self.objects.delete_in_workspace(workspace_id)
        elif self.objects.has_live_objects(workspace_id):
            raise Conflict(f"objects still run in workspace {workspace_id}; delete them first, or force the delete")
        return await self.workspaces.delete(workspace_id)

    async def create_flow_from_upload(self, files: AsyncIterable[FilePart], body_of: Callable[[str], dict],
                                      wait: bool) -> JObject:
        """A Flow in a workspace made from `files`; `body_of(workspace id)` is its request,
        asked once the upload is in. A refused Flow takes the workspace along; one that exists
        and failed keeps it, for its logs."""
        ws = await self.workspaces.create(files)
        try:
            return await self.objects.create("flow", body_of(ws.id), wait)
        except Exception as exc:
            if not (isinstance(exc, ContractError) and "id" in exc.details):
                await self.workspaces.delete(ws.id)
            raise

    def log_of(self, owner_id: str) -> tuple[Log, Callable[[], bool]]:
        """The log an id names, and whether its owner is done writing it: an object's, or a
        workspace's requirements install."""
        if owner_id.startswith("jworkspace-"):
            return self.workspaces.log_of(owner_id), lambda: self.workspaces.is_settled(owner_id)
        return self.objects.log_of(owner_id), lambda: self.objects.is_finished(owner_id)
