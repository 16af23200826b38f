from pydantic import BaseModel, ConfigDict, Field


class RoomCreate(BaseModel):
    title: str = Field(min_length=1, max_length=200)
    description: str | None = None
    price: int = Field(ge=0)
    quantity: int = Field(ge=0)


class RoomRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    hotel_id: int
    title: str
    description: str | None
    price: int
    quantity: int
